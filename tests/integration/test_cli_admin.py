"""The operator CLI (``inferenceops teams|users|keys|grants|limits|budgets|providers|deployments|
models``) against a real server.

Each command runs as its own ``python -m inferenceops`` process, configured only
by ``INFERENCEOPS_URL`` and ``INFERENCEOPS_ADMIN_KEY``, like an operator's shell.
Proves the whole loop: a team, a user, a grant and a key made through the CLI;
the key then works on the data plane (and lists the granted model); revoked,
it stops working within 2 s. Then the admission rules: limits and budgets set,
replaced, listed and deleted, a team's weight, a background-only key. Then the
catalog: providers (with a key read from stdin, never stored in plaintext),
deployments and models from spec files and flags. Also the
failure modes: a conflict, a wrong key, no key, a server that is not there,
usage errors (exit 2) and the server's refusals (exit 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration._harness import ADMIN_KEY, Gateway, SpawnGateway

pytestmark = pytest.mark.integration

MODEL = "demo-chat"  # from the embedded default platform
APPEAR_BOUND_S = 10.0
REVOCATION_BOUND_S = 2.0


def cli(*args: str, url: str, key: str | None = ADMIN_KEY,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCEOPS_")}
    env["INFERENCEOPS_URL"] = url
    if key is not None:
        env["INFERENCEOPS_ADMIN_KEY"] = key
    if stdin is not None:
        return subprocess.run([sys.executable, "-m", "inferenceops", *args], env=env, text=True,
                              capture_output=True, timeout=60, input=stdin)
    return subprocess.run([sys.executable, "-m", "inferenceops", *args], env=env, text=True,
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def ok(gw: Gateway, *args: str) -> str:
    result = cli(*args, url=gw.origin)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def ok_json(gw: Gateway, *args: str) -> Any:
    return json.loads(ok(gw, *args, "--json"))


def models_seen(gw: Gateway, secret: str) -> tuple[int, set[str]]:
    """(HTTP status, model ids) of ``GET /v1/models`` with ``secret``."""
    req = urllib.request.Request(f"{gw.base_url}/models", headers={"Authorization": f"Bearer {secret}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, {m["id"] for m in json.load(resp)["data"]}
    except urllib.error.HTTPError as exc:
        return exc.code, set()


def test_team_user_grant_key_lifecycle(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway(name="cli")

    team = ok_json(gw, "teams", "create", "search", "--weight", "3")
    assert team["name"] == "search" and team["weight"] == 3
    user = ok_json(gw, "users", "create", "dev@example.com", "--name", "Dev One")
    assert user["email"] == "dev@example.com" and user["display_name"] == "Dev One"
    added = ok_json(gw, "teams", "add-member", team["id"], "DEV@example.com", "--role", "viewer")
    assert (added["user_id"], added["role"]) == (user["id"], "viewer")  # by email, any case
    ok(gw, "teams", "add-member", team["id"], user["id"], "--role", "member")
    grant = ok_json(gw, "grants", "add", team["id"], MODEL)
    assert grant == {**grant, "team_id": team["id"], "model": MODEL}

    # Tables for people: aligned, headed, naming what was made.
    teams_table = ok(gw, "teams", "list")
    assert teams_table.splitlines()[0].split() == ["ID", "NAME", "WEIGHT", "RETENTION", "CREATED"]
    assert "search" in teams_table and team["id"] in teams_table
    assert "dev@example.com" in ok(gw, "users", "list")
    assert MODEL in ok(gw, "grants", "list", "--team", team["id"])
    assert "search" in ok(gw, "teams", "show", team["id"])
    # JSON for scripts.
    assert team["id"] in {t["id"] for t in ok_json(gw, "teams", "list")["data"]}
    assert ok_json(gw, "teams", "show", team["id"])["name"] == "search"

    created = cli("keys", "create", "--name", "ci", "--user", user["id"], "--team", team["id"],
                  "--scope", "inference", "--json", url=gw.origin)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    secret = key["secret"]
    assert secret and key["team_id"] == team["id"] and key["scopes"] == ["inference"]
    assert "not be shown again" in created.stderr
    listed = ok(gw, "keys", "list", "--team", team["id"])
    assert key["id"] in listed and secret not in listed

    end = time.monotonic() + APPEAR_BOUND_S
    while (seen := models_seen(gw, secret)) != (200, {MODEL}):
        assert time.monotonic() < end, f"key not working after {APPEAR_BOUND_S:g}s: {seen}"
        time.sleep(0.1)

    revoked = ok_json(gw, "keys", "revoke", key["id"])
    assert revoked["revoked_at"] is not None
    end = time.monotonic() + REVOCATION_BOUND_S
    while (status := models_seen(gw, secret)[0]) != 401:
        assert time.monotonic() < end, f"revoked key still answered {status} after {REVOCATION_BOUND_S:g}s"
        time.sleep(0.05)
    assert key["id"] not in ok(gw, "keys", "list", "--team", team["id"])
    assert key["id"] in ok(gw, "keys", "list", "--team", team["id"], "--include-revoked")

    # The API's own error message, on stderr, exit 1.
    duplicate = cli("teams", "create", "search", url=gw.origin)
    assert duplicate.returncode == 1
    assert duplicate.stderr.startswith("error: ") and "search" in duplicate.stderr
    assert duplicate.stdout == ""

    wrong = cli("teams", "list", url=gw.origin, key="sk-not-a-real-key")
    assert wrong.returncode == 1
    assert "error: Authentication required" in wrong.stderr

    ok(gw, "grants", "remove", team["id"], MODEL)
    assert ok_json(gw, "grants", "list", "--team", team["id"])["data"] == []
    assert "deleted" in ok(gw, "teams", "delete", team["id"])
    gone = cli("teams", "show", team["id"], url=gw.origin)
    assert gone.returncode == 1 and gone.stderr.startswith("error: ")


def test_key_rotate_prints_new_secret(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway(name="cli-rotate")
    team = ok_json(gw, "teams", "create", "rotators")
    user = ok_json(gw, "users", "create", "rot@example.com")
    ok(gw, "teams", "add-member", team["id"], user["id"])
    old = ok_json(gw, "keys", "create", "--name", "svc", "--user", user["id"], "--team", team["id"],
                  "--model", MODEL, "--expires-in-days", "30")
    assert old["allowed_models"] == [MODEL] and old["expires_at"] is not None
    rotated = cli("keys", "rotate", old["id"], "--overlap-s", "60", url=gw.origin)
    assert rotated.returncode == 0, rotated.stderr
    new_secret = rotated.stdout.split("secret: ", 1)[1].strip()
    assert new_secret and new_secret != old["secret"]
    assert "not be shown again" in rotated.stderr


def test_users_sign_in_links_and_disabling(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway(name="cli-users")
    user = ok_json(gw, "users", "create", "ops@example.com", "--platform-role", "auditor")
    assert "no sign-in links" in ok(gw, "users", "links", user["id"])
    link = ok_json(gw, "users", "link", user["id"], "--issuer", "https://idp.example.com",
                   "--subject", "248289761001")
    assert (link["user_id"], link["method"], link["subject"]) == (user["id"], "admin", "248289761001")
    table = ok(gw, "users", "links", user["id"])
    assert table.splitlines()[0].split()[:4] == ["ID", "ISSUER", "SUBJECT", "METHOD"]
    assert link["id"] in table and "https://idp.example.com" in table
    twice = cli("users", "link", user["id"], "--issuer", "https://idp.example.com",
                "--subject", "248289761001", url=gw.origin)
    assert twice.returncode == 1 and "already linked" in twice.stderr
    assert "removed sign-in link" in ok(gw, "users", "unlink", user["id"], link["id"])
    assert ok_json(gw, "users", "links", user["id"])["data"] == []
    assert ok_json(gw, "users", "disable", user["id"])["disabled"] is True
    assert ok_json(gw, "users", "enable", user["id"])["disabled"] is False


def test_server_down_names_the_url(refused_port: int) -> None:
    url = f"http://127.0.0.1:{refused_port}"
    result = cli("teams", "list", url=url)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and url in result.stderr
    assert "connection refused" in result.stderr


def test_missing_key_is_a_usage_error(refused_port: int) -> None:
    result = cli("keys", "list", url=f"http://127.0.0.1:{refused_port}", key=None)
    assert result.returncode == 2
    assert "INFERENCEOPS_ADMIN_KEY" in result.stderr and "--key" in result.stderr


def test_limits_budgets_weights_retention_and_background_keys(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway(name="cli-admission")
    team = ok_json(gw, "teams", "create", "ml")
    weighted = ok_json(gw, "teams", "set-weight", "ml", "5")  # teams by name or id
    assert weighted["id"] == team["id"] and weighted["weight"] == 5
    assert "5" in ok(gw, "teams", "set-weight", team["id"], "5")
    kept = ok_json(gw, "teams", "set-retention", "ml", "store", "--days", "30")
    assert (kept["retention"], kept["retention_days"]) == ("store", 30)
    assert ok_json(gw, "teams", "set-retention", "ml", "zero")["retention_days"] is None
    refused = cli("teams", "set-retention", "ml", "store", url=gw.origin)  # no --days
    assert refused.returncode == 2 and "--days" in refused.stderr
    assert ok_json(gw, "teams", "set-retention", "ml", "none")["retention"] == "none"
    assert ok(gw, "retained-bodies", "export", "--team", "ml") == ""  # nothing kept, nothing out
    user = ok_json(gw, "users", "create", "ml@example.com")
    ok(gw, "teams", "add-member", team["id"], user["id"])
    key = ok_json(gw, "keys", "create", "--name", "nightly", "--user", user["id"], "--team", team["id"],
                  "--background-only")
    assert key["background_only"] is True

    limit = ok_json(gw, "limits", "set", "--team", "ml", "--rpm", "60", "--tpm", "10000")
    assert (limit["scope"], limit["team_id"], limit["rpm"], limit["tpm"]) == ("team", team["id"], 60, 10000)
    replaced = ok_json(gw, "limits", "set", "--team", team["id"], "--concurrency", "2")
    assert replaced["id"] == limit["id"] and replaced["rpm"] is None and replaced["concurrency"] == 2
    on_model = ok_json(gw, "limits", "set", "--team", "ml", "--model", MODEL, "--rpm", "5")
    assert on_model["scope"] == "team_model" and on_model["model"] == MODEL
    on_key = ok_json(gw, "limits", "set", "--key-id", key["id"], "--rpm", "1")
    assert on_key["scope"] == "key" and on_key["key_id"] == key["id"]
    model_wide = ok_json(gw, "limits", "set", "--model", MODEL, "--tpm", "100000")
    assert model_wide["scope"] == "model"
    table = ok(gw, "limits", "list", "--team", "ml")
    assert table.splitlines()[0].split() == ["ID", "SCOPE", "TEAM", "KEY", "MODEL", "RPM", "TPM",
                                             "CONCURRENCY", "UPDATED"]
    assert all(rule["id"] in table for rule in (limit, on_model, on_key))
    assert model_wide["id"] not in table  # not about the team
    assert {r["id"] for r in ok_json(gw, "limits", "list", "--scope", "model")["data"]} == {
        model_wide["id"]}

    budget = ok_json(gw, "budgets", "set", "--team", "ml", "--amount", "500", "--currency", "USD",
                     "--period", "monthly", "--mode", "hard")
    assert (budget["amount"], budget["currency"], budget["period"], budget["mode"]) == (
        "500", "USD", "monthly", "hard")
    soft = ok_json(gw, "budgets", "set", "--key-id", key["id"], "--amount", "12.50", "--period", "daily",
                   "--mode", "soft")
    assert soft["amount"] == "12.5" and soft["scope"] == "key"
    budgets = ok(gw, "budgets", "list", "--team", "ml")
    assert budgets.splitlines()[0].split()[:5] == ["ID", "SCOPE", "TEAM", "KEY", "AMOUNT"]
    assert budget["id"] in budgets and soft["id"] in budgets and "12.5" in budgets

    # Usage errors are exit 2 before any request; the server's refusals exit 1 with its message.
    for args in (("limits", "set", "--team", "ml"), ("limits", "set", "--rpm", "1"),
                 ("limits", "set", "--key-id", key["id"], "--team", "ml", "--rpm", "1"),
                 ("limits", "set", "--team", "ml", "--rpm", "0"),
                 ("budgets", "set", "--amount", "5")):
        assert cli(*args, url=gw.origin).returncode == 2, args
    euros = cli("budgets", "set", "--team", "ml", "--amount", "5", "--currency", "EUR", url=gw.origin)
    assert euros.returncode == 1 and "currency" in euros.stderr and "USD" in euros.stderr
    nothing = cli("budgets", "set", "--team", "ml", "--amount", "0", url=gw.origin)
    assert nothing.returncode == 1 and "amount" in nothing.stderr
    unknown = cli("limits", "set", "--team", "no-such-team", "--rpm", "1", url=gw.origin)
    assert unknown.returncode == 1 and "no-such-team" in unknown.stderr

    assert "deleted limit" in ok(gw, "limits", "delete", limit["id"])
    assert ok_json(gw, "budgets", "delete", budget["id"]) == {"id": budget["id"], "deleted": True}
    assert {b["id"] for b in ok_json(gw, "budgets", "list", "--team", "ml")["data"]} == {soft["id"]}
    gone = cli("limits", "delete", limit["id"], url=gw.origin)
    assert gone.returncode == 1 and gone.stderr.startswith("error: ")


UPSTREAM_SECRET = "sk-upstream-cli-secret-0123456789"


def test_catalog_providers_deployments_models(spawn_gateway: SpawnGateway, tmp_path: Path) -> None:
    gw = spawn_gateway(name="cli-catalog")
    provider_file = tmp_path / "provider.yaml"
    provider_file.write_text("name: openai-eu\nbase_url: https://eu.api.example/v1\n", encoding="utf-8")
    provider = ok_json(gw, "providers", "create", "--file", str(provider_file),
                       "--api-key-env", "OPENAI_EU_KEY")  # a flag wins over (adds to) the file
    assert (provider["name"], provider["api_key_env"], provider["has_api_key"]) == (
        "openai-eu", "OPENAI_EU_KEY", False)

    keyed = cli("providers", "set-key", "openai-eu", "--json", url=gw.origin, stdin=UPSTREAM_SECRET + "\n")
    assert keyed.returncode == 0, keyed.stderr
    assert json.loads(keyed.stdout)["has_api_key"] is True
    assert UPSTREAM_SECRET not in keyed.stdout + keyed.stderr
    shown = ok(gw, "providers", "show", provider["id"])
    assert "api key stored" in shown and "yes" in shown and UPSTREAM_SECRET not in shown
    listed = ok(gw, "providers", "list")
    assert listed.splitlines()[0].split()[:4] == ["ID", "NAME", "BASE", "URL"]
    assert "openai-eu" in listed and UPSTREAM_SECRET not in listed
    for stored in gw.data_dir.rglob("*"):  # the database, its WAL: never the key in plaintext
        if stored.is_file():
            assert UPSTREAM_SECRET.encode() not in stored.read_bytes(), stored

    sim_file = tmp_path / "sim.json"  # JSON is YAML too
    sim_file.write_text(json.dumps({"name": "sim-pool", "engine": "simulator", "profile":
                                    "llama-3.1-8b-h100", "served_model": "llama", "replicas": 2}))
    sim = ok_json(gw, "deployments", "create", "-f", str(sim_file))
    assert (sim["replicas"], sim["provider"]) == (2, None)
    upstream = ok_json(gw, "deployments", "create", "--name", "eu-mini", "--engine", "openai",
                       "--served-model", "gpt-4o-mini", "--provider", "openai-eu", "--capacity", "8")
    assert (upstream["provider_id"], upstream["capacity"]) == (provider["id"], 8)
    assert "eu-mini" in ok(gw, "deployments", "list", "--provider", "openai-eu")
    assert ok_json(gw, "deployments", "update", "eu-mini", "--capacity", "16")["capacity"] == 16

    model = ok_json(gw, "models", "create", "--name", "mini", "--deployment", "eu-mini",
                    "--alias", "mini-latest", "--input-price", "0.15", "--output-price", "0.6")
    unpriced = {"cached_input_per_million": None, "batch_discount_percent": "0"}
    assert model["aliases"] == ["mini-latest"] and model["price"] == {
        "input_per_million": "0.15", "output_per_million": "0.6", **unpriced}
    repriced = ok_json(gw, "models", "update", "mini", "--output-price", "0.9")
    assert repriced["price"] == {"input_per_million": "0.15", "output_per_million": "0.9", **unpriced}
    table = ok(gw, "models", "list")
    assert table.splitlines()[0].split()[:5] == ["ID", "NAME", "DEPLOYMENT", "TYPE", "ALIASES"]
    assert "0.15/0.9" in table and "mini-latest" in table

    # The server's refusals, with its message (exit 1); usage errors before any request (exit 2).
    in_use = cli("providers", "delete", "openai-eu", url=gw.origin)
    assert in_use.returncode == 1 and "'eu-mini'" in in_use.stderr
    clash = cli("models", "create", "--name", "mini-latest", "--deployment", "sim-pool", url=gw.origin)
    assert clash.returncode == 1 and "'mini-latest'" in clash.stderr
    bad = cli("models", "create", "--name", "x", "--deployment", "sim-pool", "--type", "rerank",
              url=gw.origin)
    assert bad.returncode == 1 and "type" in bad.stderr
    assert cli("providers", "set-key", "openai-eu", url=gw.origin, stdin="").returncode == 2
    keyfile = tmp_path / "with-key.yaml"
    keyfile.write_text(f"name: p2\nbase_url: https://x.example/v1\napi_key: {UPSTREAM_SECRET}\n")
    refused = cli("providers", "create", "-f", str(keyfile), url=gw.origin)
    assert refused.returncode == 2 and "set-key" in refused.stderr
    assert cli("providers", "show", "no-such-provider", url=gw.origin).returncode == 1

    assert "deleted model mini" in ok(gw, "models", "delete", "mini")
    ok(gw, "providers", "clear-key", "openai-eu")
    assert ok_json(gw, "providers", "show", "openai-eu")["has_api_key"] is False
    for kind, name in (("deployments", "eu-mini"), ("deployments", "sim-pool"),
                       ("providers", "openai-eu")):
        assert ok_json(gw, kind, "delete", name)["deleted"] is True
    assert ok_json(gw, "providers", "list")["data"] == []


def test_an_owner_invites_and_the_invitee_accepts(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway(name="cli-invite")

    def person(email: str, team_id: str, role: str) -> str:
        """A user in a team with an admin-scoped key of their own: the key's secret."""
        user = ok_json(gw, "users", "create", email)
        ok(gw, "teams", "add-member", team_id, user["id"], "--role", role)
        made = cli("keys", "create", "--name", "me", "--user", user["id"], "--team", team_id,
                   "--scope", "admin", "--json", url=gw.origin)
        assert made.returncode == 0, made.stderr
        return str(json.loads(made.stdout)["secret"])

    search = ok_json(gw, "teams", "create", "search")
    ads = ok_json(gw, "teams", "create", "ads")
    owner = person("lead@example.com", search["id"], "owner")
    invitee = person("dev@example.com", ads["id"], "member")

    direct = cli("teams", "add-member", search["id"], "dev@example.com", url=gw.origin, key=owner)
    assert direct.returncode == 1 and "invite them" in direct.stderr
    offer = cli("teams", "invite", "search", "dev@example.com", "--role", "viewer", "--json",
                url=gw.origin, key=owner)
    assert offer.returncode == 0, offer.stderr
    invitation = json.loads(offer.stdout)
    assert (invitation["team_name"], invitation["role"], invitation["state"]) == (
        "search", "viewer", "pending")
    assert invitation["id"] in cli("teams", "invitations", "search", url=gw.origin, key=owner).stdout

    mine = cli("invitations", "list", url=gw.origin, key=invitee)
    assert mine.returncode == 0 and invitation["id"] in mine.stdout and "search" in mine.stdout
    assert cli("invitations", "accept", invitation["id"], url=gw.origin, key=owner).returncode == 1
    accepted = cli("invitations", "accept", invitation["id"], "--json", url=gw.origin, key=invitee)
    assert accepted.returncode == 0 and json.loads(accepted.stdout)["state"] == "accepted"
    still_open = json.loads(cli("teams", "invitations", "search", "--json", url=gw.origin,
                                key=owner).stdout)["data"]
    assert still_open == []  # accepted: no longer open
    request = urllib.request.Request(f"{gw.origin}/admin/api/v1/teams/{search['id']}/members",
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        roles = {m["user_id"]: m["role"] for m in json.load(resp)["data"]}
    assert roles[invitation["user_id"]] == "viewer"
    # Their key for ads still acts in ads only: it does not reach the team they joined.
    assert "search" not in cli("teams", "list", url=gw.origin, key=invitee).stdout
