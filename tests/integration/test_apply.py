"""Config as code against real servers: ``inferenceops apply`` and catalog changes reaching the
data plane without a restart.

* ``inferenceops apply -f FILE --dry-run`` shows the plan and the new model is not served;
  without ``--dry-run`` the data plane serves it within ``CATALOG_BOUND_S``; a file with an
  error exits 1 naming the line and changes nothing; the same file again changes nothing.
* A model made through the admin API (a deployment, then the model) is served by two
  gateway replicas sharing one store within ``CATALOG_BOUND_S``, and once deleted answers
  404 ``model_not_found`` on both (SQLite and PostgreSQL).
"""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferenceops.config.spec import EMBEDDED_DEFAULT
from tests.integration._harness import ADMIN_KEY, Gateway, SpawnGateway
from tests.integration.test_cli_admin import cli
from tests.integration.test_identity import SharedStore, shared_store

pytestmark = pytest.mark.integration
__all__ = ["shared_store"]  # the fixture, imported so this module can use it

#: Snapshot refresh is 1 s by default; a change must be served (or gone) within this.
CATALOG_BOUND_S = 2.0
NEW_MODEL = "fast-chat"


def request(gw: Gateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """(status, decoded JSON) of one call with the admin key; errors are answers too."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{gw.origin}{path}", data=data, method=method, headers={
        "Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def chat(gw: Gateway, model: str) -> tuple[int, Any]:
    return request(gw, "POST", "/v1/chat/completions", {
        "model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})


def wait_for(gws: list[Gateway], model: str, want: int, bound_s: float = CATALOG_BOUND_S) -> float:
    """Seconds until every gateway answers ``want`` for a chat with ``model``; fails past the bound."""
    started = time.monotonic()
    pending = list(gws)
    while pending:
        pending = [gw for gw in pending if chat(gw, model)[0] != want]
        elapsed = time.monotonic() - started
        assert elapsed <= bound_s, f"{[gw.name for gw in pending]} not {want} for {model} " \
                                   f"after {elapsed:.2f}s"
        if pending:
            time.sleep(0.05)
    return time.monotonic() - started


def catalog(gw: Gateway) -> list[dict[str, Any]]:
    """Every stored model and deployment, as the admin API shows them (with updated_at)."""
    rows = []
    for kind in ("deployments", "models"):
        status, page = request(gw, "GET", f"/admin/api/v1/{kind}?limit=500")
        assert status == 200, page
        rows += page["data"]
    return rows


def platform_file(tmp_path: Path) -> Path:
    """The embedded default the gateway started with, plus a simulated deployment and a model."""
    spec = copy.deepcopy(EMBEDDED_DEFAULT)
    spec["deployments"].append({"name": "fast", "engine": "simulator", "profile": "test-fast",
                                "served_model": "fast-model"})
    spec["models"].append({"name": NEW_MODEL, "deployment": "fast", "aliases": ["fast"]})
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def test_apply_from_the_terminal(spawn_gateway: SpawnGateway, tmp_path: Path) -> None:
    gw = spawn_gateway(name="apply")
    new = platform_file(tmp_path)

    dry = cli("apply", "-f", str(new), "--dry-run", url=gw.origin)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[:3] == ["would change 2 object(s):", "  + deployment fast",
                                           f"  + model {NEW_MODEL}"]
    assert "dry run" in dry.stdout
    status, error = chat(gw, NEW_MODEL)
    assert status == 404 and error["error"]["code"] == "model_not_found"
    before = catalog(gw)
    assert NEW_MODEL not in {row["name"] for row in before}

    applied = cli("apply", "-f", str(new), url=gw.origin)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith("changed 2 object(s):") and "dry run" not in applied.stdout
    took = wait_for([gw], NEW_MODEL, 200)
    print(f"{NEW_MODEL} served {took:.2f}s after apply returned")
    assert chat(gw, "fast")[0] == 200  # its alias too
    assert chat(gw, "demo-chat")[0] == 200  # the models the file kept, kept

    after = catalog(gw)
    broken = tmp_path / "broken.yaml"
    broken.write_text(new.read_text(encoding="utf-8").replace(
        f"- name: {NEW_MODEL}", f"- name: {NEW_MODEL}\n   oops: ["), encoding="utf-8")
    refused = cli("apply", "-f", str(broken), url=gw.origin)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(f"error: {broken}: line ") and "not valid YAML" in refused.stderr
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(new.read_text(encoding="utf-8").replace("deployment: fast",
                                                               "deployment: nowhere"))
    refused = cli("apply", "-f", str(unknown), url=gw.origin)
    line = next(i for i, text in enumerate(unknown.read_text().splitlines(), 1) if "nowhere" in text)
    assert refused.returncode == 1
    assert f"line {line}: models[2].deployment" in refused.stderr and "'nowhere'" in refused.stderr
    assert catalog(gw) == after  # nothing changed, not even updated_at

    again = cli("apply", "-f", str(new), url=gw.origin)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "the store already matches the file; nothing to change"
    piped = cli("apply", "-f", "-", "--json", url=gw.origin, stdin=new.read_text(encoding="utf-8"))
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout) == {
        "dry_run": False, "changes": [],
        "summary": "the store already matches the file; nothing to change"}
    assert catalog(gw) == after

    missing = cli("apply", "-f", str(tmp_path / "nope.yaml"), url=gw.origin)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_admin_api_catalog_changes_reach_every_replica(spawn_gateway: SpawnGateway,
                                                       shared_store: SharedStore) -> None:
    first = spawn_gateway(env=shared_store.env, name="replica-a")
    second = spawn_gateway(env=shared_store.env, name="replica-b")
    status, deployment = request(first, "POST", "/admin/api/v1/deployments", {
        "name": "api-fast", "engine": "simulator", "profile": "test-fast",
        "served_model": "api-fast-model"})
    assert status == 201, deployment
    status, model = request(first, "POST", "/admin/api/v1/models",
                            {"name": "api-chat", "deployment": "api-fast"})
    assert status == 201, model
    took = wait_for([first, second], "api-chat", 200)
    print(f"api-chat served by both replicas {took:.2f}s after it was created")

    status, _ = request(second, "DELETE", f"/admin/api/v1/models/{model['id']}")
    assert status == 204
    took = wait_for([first, second], "api-chat", 404)
    print(f"api-chat gone from both replicas {took:.2f}s after it was deleted")
    for gw in (first, second):
        assert chat(gw, "api-chat")[1]["error"]["code"] == "model_not_found"
        assert chat(gw, "demo-chat")[0] == 200
