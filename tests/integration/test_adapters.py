"""LoRA adapters as governed resources, end to end (issue #11 item 5), on SQLite and PostgreSQL.

A real ``serve`` process with simulated engines mounted in-process (``/_sim/<replica>``):

* ``sim`` — two replicas of the ``test-fast`` profile (2 LoRA slots each) serving ``chat``;
* ``solo`` — one replica, ``max_loras: 2`` in the file, serving ``solo-chat`` (eviction);
* ``nolora`` — a profile with LoRA off, serving ``nolora-chat`` (a load the engine refuses).

Adapters come from all three surfaces: ``tone`` (and ``s1``-``s3``, ``broken``) from the
platform file, ``legal`` through the admin API, ``poem`` through the CLI. Team A is granted
the adapters by name; team B only ``chat``. Readiness probes run once a minute here, so the
gateway learns that an engine lost an adapter from the engine's 404, not from a probe.

What is proved: the official SDK lists a granted adapter (``parent`` = its base model) and
calls it; the first request loads it on one replica and every later one goes back there; a
replica's slots hold at most ``max_loras`` and the least recently used idle adapter makes
room; an adapter the engine lost is loaded again and the request still answered; a team not
granted it gets the same 404 as for a model; bad registrations are refused naming the field;
a model an adapter names cannot be deleted; a guardrail policy's allowed list names adapters;
a load the engine refuses is a 502 in OpenAI's shape; the usage ledger names the adapter,
and usage reports group and filter by it.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
import yaml

from inferenceops.outbox.records import UsageRecord
from inferenceops.store import Database
from inferenceops.store.repo.usage import list_usage
from tests.integration._harness import ADMIN_KEY, Gateway
from tests.integration._support import Store, store_backend
from tests.support.postgres import run_sync

pytestmark = pytest.mark.integration

SECRET = "integration-platform-secret-for-the-adapters-test"
READY_S = 30.0
PLATFORM: dict[str, Any] = {
    "deployments": [
        {"name": "sim", "engine": "simulator", "profile": "test-fast", "served_model": "base",
         "replicas": 2},
        {"name": "solo", "engine": "simulator", "profile": "test-fast", "served_model": "solo",
         "max_loras": 2},
        {"name": "nolora", "engine": "simulator", "profile": "PROFILE", "served_model": "nl"},
    ],
    "models": [{"name": "chat", "deployment": "sim"}, {"name": "solo-chat", "deployment": "solo"},
               {"name": "nolora-chat", "deployment": "nolora"}],
    "adapters": [
        {"name": "tone", "base_model": "chat", "source": "/loras/tone"},
        *({"name": f"s{i}", "base_model": "solo-chat", "source": f"/loras/s{i}"} for i in (1, 2, 3)),
        {"name": "broken", "base_model": "nolora-chat", "source": "/loras/broken"},
    ],
}
NO_LORA_PROFILE = """
name: no-lora
description: "LoRA off: every load is refused"
source: "synthetic, for tests"
task: generate
max_model_len: 2048
block_size: 16
kv_cache_tokens: 8192
max_num_seqs: 4
prefill_tokens_per_s: 100000
decode_step_ms_base: 1
prefix_cache_blocks: 64
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    yield from store_backend(request.param, SECRET)


@pytest.fixture(scope="module")
def gw(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp(f"adapters-{store.name}")
    profile = folder / "no-lora.yaml"
    profile.write_text(NO_LORA_PROFILE, encoding="utf-8")
    text = yaml.safe_dump(PLATFORM).replace("PROFILE", str(profile))
    env = {**store.env, "INFERENCEOPS_HEALTH_PROBE_INTERVAL_S": "60",
           "INFERENCEOPS_USAGE_ROLLUP_INTERVAL_S": "1"}
    gateway = Gateway(folder, config=text, env=env, name=f"adapters-{store.name}")
    try:
        yield gateway.wait_ready()
    finally:
        gateway.stop()


def call(gw: Gateway, method: str, path: str, body: Any = None,
         key: str = ADMIN_KEY) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{gw.origin}{path}", method=method, data=None if body is None else orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, _parsed(resp.read())
    except urllib.error.HTTPError as error:
        return error.code, _parsed(error.read())


def _parsed(raw: bytes) -> Any:
    """JSON, or the text (the engines' LoRA endpoints answer in plain text)."""
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def admin(gw: Gateway, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
    status, reply = call(gw, method, f"/admin/api/v1{path}", body)
    assert status == expect, (method, path, status, reply)
    return reply


def engine_adapters(gw: Gateway, replica: str) -> set[str]:
    """What the simulated engine itself holds (its /v1/models: adapters have a parent)."""
    _, listed = call(gw, "GET", f"/_sim/{replica}/v1/models")
    return {m["id"] for m in listed["data"] if m.get("parent")}


def team_key(gw: Gateway, team: str, grants: list[str]) -> tuple[str, str, str]:
    """(team id, key id, secret) of a new team granted ``grants``, with one member's key."""
    made = admin(gw, "POST", "/teams", {"name": team}, expect=201)
    user = admin(gw, "POST", "/users", {"email": f"{team}@example.com"}, expect=201)
    admin(gw, "PUT", f"/teams/{made['id']}/members/{user['id']}", {"role": "member"})
    for name in grants:
        admin(gw, "PUT", f"/grants/{made['id']}/{name}")
    key = admin(gw, "POST", "/keys", {"name": team, "team_id": made["id"], "user_id": user["id"],
                                      "scopes": ["inference"]}, expect=201)
    return made["id"], key["id"], key["secret"]


def sdk(gw: Gateway, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=secret, max_retries=0, timeout=30)


def wait_listed(client: openai.OpenAI, names: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + READY_S
    while True:
        listed = {m.id: m for m in client.models.list()}
        if names <= set(listed):
            return listed
        assert time.monotonic() < deadline, f"never listed {names - set(listed)}: {sorted(listed)}"
        time.sleep(0.05)


def chat(client: openai.OpenAI, model: str) -> Any:
    return client.chat.completions.create(model=model, max_tokens=4,
                                          messages=[{"role": "user", "content": "hello"}])


def ledger(url: str, key_id: str) -> list[UsageRecord]:
    async def read() -> tuple[UsageRecord, ...]:
        db = Database(url)
        try:
            async with db.read() as tx:
                return await list_usage(tx, key_id=key_id, limit=10_000)
        finally:
            await db.close()
    return list(run_sync(read()))


def test_adapters_registered_granted_routed_evicted_and_metered(gw: Gateway, store: Store) -> None:
    # Registered through the admin API (audited) and the CLI, beside the file's.
    legal = admin(gw, "POST", "/adapters", {"name": "legal", "base_model": "chat",
                                            "source": "/loras/legal"}, expect=201)
    assert legal["base_model"] == "chat" and legal["managed_by"] is None
    audit = admin(gw, "GET", "/audit?limit=1000")["data"]
    assert any(e["action"] == "adapter.create" and e["target_id"] == legal["id"] for e in audit)
    cli = subprocess.run(
        [sys.executable, "-m", "inferenceops", "adapters", "create", "--name", "poem",
         "--base-model", "chat", "--source", "/loras/poem", "--url", gw.origin, "--key",
         ADMIN_KEY, "--json"], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert orjson.loads(cli.stdout)["base_model"] == "chat"
    listed_cli = subprocess.run(
        [sys.executable, "-m", "inferenceops", "adapters", "list", "--url", gw.origin, "--key",
         ADMIN_KEY, "--json"], capture_output=True, text=True, timeout=60)
    rows = orjson.loads(listed_cli.stdout)["data"]
    assert {"tone", "legal", "poem", "s1"} <= {a["name"] for a in rows}
    file_tone = next(a for a in rows if a["name"] == "tone")
    assert file_tone["managed_by"] == "config"

    # Bad input: named fields, and a model kept while an adapter names it.
    status, reply = call(gw, "POST", "/admin/api/v1/adapters",
                         {"name": "x", "base_model": "nope", "source": "/l"})
    assert status in (400, 422) and reply["error"]["param"] == "base_model", reply
    chat_id = admin(gw, "GET", "/models?name=chat")["data"][0]["id"]
    status, reply = call(gw, "DELETE", f"/admin/api/v1/models/{chat_id}")
    assert status == 409 and "'legal'" in reply["error"]["message"], reply

    _, key_a, secret_a = team_key(gw, "team-a", ["tone", "legal", "poem", "s1", "s2", "s3",
                                                 "broken"])
    _, _, secret_b = team_key(gw, "team-b", ["chat"])
    a, b = sdk(gw, secret_a), sdk(gw, secret_b)

    # /v1/models, through the official SDK: adapters with their parent, for granted teams only.
    listed = wait_listed(a, {"tone", "legal", "poem"})
    assert listed["tone"].model_extra["parent"] == "chat" and "chat" not in listed
    assert "tone" not in {m.id for m in b.models.list()}
    with pytest.raises(openai.NotFoundError) as refused:
        chat(b, "tone")
    with pytest.raises(openai.NotFoundError) as unknown:
        chat(b, "no-such-model")
    assert refused.value.body["code"] == unknown.value.body["code"] == "model_not_found"

    # The first request loads the adapter on one replica; later ones go back there.
    assert engine_adapters(gw, "sim-0") | engine_adapters(gw, "sim-1") == set()
    for _ in range(6):
        answer = chat(a, "tone")
        assert answer.usage is not None and answer.usage.completion_tokens > 0
    holders = [r for r in ("sim-0", "sim-1") if "tone" in engine_adapters(gw, r)]
    assert len(holders) == 1, holders

    # An engine that lost the adapter (restarted, or another gateway process unloaded it)
    # answers 404; the request had not started, so the gateway loads it again and resends.
    status, _ = call(gw, "POST", f"/_sim/{holders[0]}/v1/unload_lora_adapter",
                     {"lora_name": "tone"})
    assert status == 200 and "tone" not in engine_adapters(gw, holders[0])
    chat(a, "tone")
    assert "tone" in engine_adapters(gw, holders[0]) | engine_adapters(
        gw, "sim-1" if holders[0] == "sim-0" else "sim-0")

    # Full slots: the least recently used idle adapter is unloaded for the new one.
    for name in ("s1", "s2", "s1", "s3"):
        chat(a, name)
    assert engine_adapters(gw, "solo-0") == {"s1", "s3"}

    # A load the engine refuses: 502 in OpenAI's shape, at once.
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as failed:
        chat(a, "broken")
    assert failed.value.status_code == 502 and failed.value.body["code"] == "adapter_load_failed"
    assert failed.value.body["type"] == "upstream_error" and time.monotonic() - started < 10

    # Counted before the guardrail part below: until the policy reaches the snapshot, its new
    # key may be served 'legal' (which loads it) — the wait loop there tolerates that.
    with urllib.request.urlopen(f"{gw.origin}/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert 'inferenceops_adapter_loads_total{deployment="sim"} 2' in metrics  # tone, twice
    assert 'inferenceops_adapter_unloads_total{deployment="solo"} 1' in metrics

    # A guardrail policy's allowed list names adapters: on this key, tone yes, legal no.
    admin(gw, "POST", "/guardrails/policies", {"name": "only-tone", "rules": [
        {"models": ["tone"], "action": "block"}]}, expect=201)
    guarded_user = admin(gw, "GET", "/users?limit=1000")["data"]
    member = next(u for u in guarded_user if u["email"] == "team-a@example.com")
    team_a = admin(gw, "GET", "/teams?limit=1000")["data"]
    team_a_id = next(t["id"] for t in team_a if t["name"] == "team-a")
    guarded = admin(gw, "POST", "/keys", {"name": "guarded", "team_id": team_a_id,
                                          "user_id": member["id"], "scopes": ["inference"]},
                    expect=201)
    admin(gw, "POST", "/guardrails/attachments", {"policy": "only-tone", "scope": "key",
                                                  "key_id": guarded["id"]}, expect=201)
    g = sdk(gw, guarded["secret"])
    deadline = time.monotonic() + READY_S
    while True:
        try:
            chat(g, "legal")
        except openai.BadRequestError as blocked:
            assert blocked.body["code"] == "content_policy_violation"
            break
        except openai.AuthenticationError:
            pass  # the key is not in the snapshot yet
        assert time.monotonic() < deadline, "the policy never applied"
        time.sleep(0.05)
    chat(g, "tone")

    # Usage reports group and filter by adapter (from the rollups, a second behind the ledger).
    deadline = time.monotonic() + READY_S
    while True:
        report = admin(gw, "GET", "/usage?group_by=adapter,model&adapter=tone&granularity=day")
        if report["totals"]["requests"] >= 8:  # 7 of the member's key, 1 of the guarded one
            break
        assert time.monotonic() < deadline, report
        time.sleep(0.2)
    assert {(r["adapter"], r["model"]) for r in report["data"]} == {("tone", "chat")}
    assert sum(r["requests"] for r in report["data"]) == 8

    # Metered to the adapter: model = the base model, adapter = the adapter, one replica.
    assert gw.stop() == 0
    url = store.url or f"sqlite+aiosqlite:///{gw.data_dir / 'inferenceops.db'}"
    records = ledger(url, key_a)
    tone = sorted((r for r in records if r.adapter == "tone"), key=lambda r: r.at)
    assert len(tone) == 7 and all(r.model == "chat" and r.status == 200 for r in tone)
    assert all(r.completion_tokens > 0 for r in tone)
    assert {r.replica for r in tone[:6]} == {holders[0]}
    assert {r.adapter for r in records} >= {"tone", "s1", "s2", "s3", "broken"}
    broken = next(r for r in records if r.adapter == "broken")
    assert broken.status == 502 and broken.cost_nanos == 0
