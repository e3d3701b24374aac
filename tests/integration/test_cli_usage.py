"""``inferenceops usage`` and ``GET /v1/usage`` against a real server whose rollups run every
half second.

Requests made through the data plane with a team member's key and the bootstrap admin's
reach the ledger (outbox), the rollups (the ``usage-rollups`` service), and the report:
as a table (team names, a totals line, how current it is), JSON and CSV; the member sees
only their own key's usage; bad input is the server's message naming the parameter (exit
1), contradictory flags a usage error (exit 2).
"""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.request

import pytest

from tests.integration._harness import ADMIN_KEY, Gateway, SpawnGateway
from tests.integration.test_cli_admin import MODEL, cli, models_seen, ok, ok_json

pytestmark = pytest.mark.integration

ROLLED_UP_BOUND_S = 20.0


def chat(gw: Gateway, secret: str) -> None:
    body = json.dumps({"model": MODEL, "max_tokens": 4,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    req = urllib.request.Request(f"{gw.base_url}/chat/completions", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {secret}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


def own_usage(gw: Gateway, secret: str) -> dict[str, object]:
    req = urllib.request.Request(f"{gw.base_url}/usage", headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)  # type: ignore[no-any-return]


def test_usage_reports_what_the_data_plane_did(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway(name="cli-usage", env={"INFERENCEOPS_USAGE_ROLLUP_INTERVAL_S": "0.5",
                                              "INFERENCEOPS_OUTBOX_FLUSH_S": "0.1"})
    team = ok_json(gw, "teams", "create", "search")
    user = ok_json(gw, "users", "create", "dev@example.com")
    ok(gw, "teams", "add-member", team["id"], user["id"], "--role", "member")
    ok(gw, "grants", "add", team["id"], MODEL)
    member = ok_json(gw, "keys", "create", "--name", "dev", "--user", user["id"], "--team",
                     team["id"], "--scope", "inference", "--scope", "admin")
    deadline = time.monotonic() + 10
    while models_seen(gw, member["secret"])[0] != 200:
        assert time.monotonic() < deadline, "the new key never worked"
        time.sleep(0.1)
    for _ in range(3):
        chat(gw, member["secret"])
    chat(gw, ADMIN_KEY)

    deadline = time.monotonic() + ROLLED_UP_BOUND_S
    while (report := ok_json(gw, "usage", "--by", "team"))["totals"]["requests"] < 4:
        assert time.monotonic() < deadline, f"not rolled up after {ROLLED_UP_BOUND_S:g}s: {report}"
        time.sleep(0.25)
    assert report["totals"]["requests"] == 4 and report["current_to"] is not None
    assert {row["team_id"]: row["requests"] for row in report["data"]} == {team["id"]: 3, None: 1}

    table = ok(gw, "usage", "--by", "team,model").splitlines()
    assert table[0].split() == ["DAY", "TEAM", "MODEL", "REQUESTS", "PROMPT", "COMPLETION",
                                "CACHED", "ESTIMATED", "ERRORS", "COST"]
    assert any(line.split()[1:3] == ["search", MODEL] for line in table[1:])  # the team's name
    assert table[-2].split()[0] == "total" and table[-2].split()[-7] == "4"
    assert "rolled up to" in table[-1]
    hourly = ok(gw, "usage", "--hourly", "--by", "key").splitlines()
    assert hourly[0].split()[:2] == ["HOUR", "KEY"] and member["id"] in "\n".join(hourly)

    exported = ok(gw, "usage", "--csv", "--by", "model", "--team", "search")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["model"], r["requests"]) for r in rows] == [(MODEL, "3")]

    mine = json.loads(cli("usage", "--json", "--by", "key", url=gw.origin,
                          key=member["secret"]).stdout)
    assert {row["key_id"] for row in mine["data"]} == {member["id"]}
    assert mine["totals"]["requests"] == 3

    # Self-service on the data plane: the team's usage by day and model; the bootstrap key
    # (no team) sees only its own.
    assert own_usage(gw, member["secret"])["totals"]["requests"] == 3
    assert [(r["model"], r["requests"]) for r in own_usage(gw, member["secret"])["data"]] == [(MODEL, 3)]
    assert own_usage(gw, ADMIN_KEY)["totals"]["requests"] == 1

    bad = cli("usage", "--from", "yesterday", url=gw.origin)
    assert bad.returncode == 1 and bad.stderr.startswith("error: from:"), bad.stderr
    long = cli("usage", "--hourly", "--from", "2026-01-01", "--to", "2026-03-01", url=gw.origin)
    assert long.returncode == 1 and "at most 31 days" in long.stderr and "from" in long.stderr
    both = cli("usage", "--json", "--csv", url=gw.origin)
    assert both.returncode == 2 and "not both" in both.stderr

    # Chargeback: the demo deployment declares a GPU cost (1 GPU at $3.60 an hour: a cent per
    # 10 s, since midnight), the same usage shares it; the lines add up to the cost.
    spec = gw.data_dir.parent / "gpu.yaml"
    spec.write_text("gpu_cost: {gpus: 1, cost_per_gpu_hour: '3.60', since: "
                    f"'{time.strftime('%Y-%m-%d', time.gmtime())}'}}\n")
    ok(gw, "deployments", "update", "demo-chat", "--file", str(spec))
    for view in ([], ["--spread-idle"]):
        charged = ok_json(gw, "chargeback", *view)
        lines = charged["data"]
        assert {line["deployment"] for line in lines} == {"demo-chat"}, charged
        [total] = charged["deployments"]
        assert sum(line["cost_cents"] for line in lines) == total["cost_cents"] > 0
        teams = {line["team_id"]: line["requests"] for line in lines if line["kind"] == "team"}
        assert teams == {team["id"]: 3, None: 1}
        assert charged["view"] == ("chargeback" if view else "showback")
    # By hour the API answers in pages of 24 hours; the CLI follows them into one report.
    since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 2 * 86400))
    hourly = ok_json(gw, "chargeback", "--by", "hour", "--from", since)
    starts = [total["start"] for total in hourly["deployments"]]
    assert len(starts) == len(set(starts)) > 48 and starts == sorted(starts)
    assert hourly["next_after"] is None
    assert sum(line["cost_cents"] for line in hourly["data"]) == hourly["totals"]["cost_cents"] \
        == sum(total["cost_cents"] for total in hourly["deployments"]) > 0
    table = ok(gw, "chargeback").splitlines()
    assert table[0].split()[:3] == ["DEPLOYMENT", "TEAM", "COST"]
    assert any(line.split()[:2] == ["demo-chat", "search"] for line in table[1:])
    assert any("(no team)" in line for line in table) and table[-2].startswith("total ")
    exported = list(csv.DictReader(io.StringIO(ok(gw, "chargeback", "--csv", "--by", "day"))))
    assert {row["deployment"] for row in exported} == {"demo-chat"}
    refused = cli("chargeback", "--deployment", "demo-embed", url=gw.origin)
    assert refused.returncode == 1 and "gpu_cost" in refused.stderr, refused.stderr
