"""A LoRA adapter registered in the platform, on two real vLLM replicas (issue #11 item 5).

The package's gateway and replicas (``conftest``: LoRA enabled, runtime loading allowed) and
the tiny model's adapter built beside it (``build_models``: ``lora/``). The adapter is
registered through the admin API with that folder as its ``source`` and granted to a team of
its own (the adapter only, not the base model); the official SDK then calls it through the
gateway. Proved, from the engines' own ``/v1/models`` (each lists the adapters it holds, with
``parent``) and the usage ledger (``/usage/records``): the first request loads it at runtime
on exactly one replica, it is served, every later request goes back to that replica, and
each is metered to the adapter. Afterwards the adapter is unloaded from the engine, so the
tier's other tests see the replicas as they found them.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import openai
import orjson

from tests.engines._vllm import PUBLIC_MODEL, VllmServer
from tests.engines.conftest import _admin, make_team_key
from tests.integration._harness import Gateway

ADAPTER = "tiny-lora"
REQUESTS = 4


def _held(replica: VllmServer) -> set[str]:
    with urllib.request.urlopen(f"{replica.base_url}/models", timeout=10) as resp:
        return {m["id"] for m in orjson.loads(resp.read())["data"] if m.get("parent")}


def _records(gw: Gateway, count: int) -> list[dict[str, Any]]:
    """The adapter's usage records once ``count`` are in the ledger (the outbox writes in
    batches)."""
    deadline = time.monotonic() + 30
    while True:
        found = [r for r in _admin(gw, "GET", f"/usage/records?model={PUBLIC_MODEL}&limit=100")
                 ["data"] if r["adapter"] == ADAPTER]
        if len(found) >= count:
            return list(found)
        assert time.monotonic() < deadline, f"{len(found)} of {count} usage records after 30 s"
        time.sleep(0.2)


def test_an_adapter_registered_in_the_platform_is_loaded_served_routed_back_and_metered(
        engine_gateway: Gateway, replicas: list[VllmServer], tiny_model: Path) -> None:
    gw = engine_gateway
    assert all(ADAPTER not in _held(r) for r in replicas)
    made = _admin(gw, "POST", "/adapters", {"name": ADAPTER, "base_model": PUBLIC_MODEL,
                                            "source": str(tiny_model / "lora")})
    try:
        secret = make_team_key(gw, team_name="lora-tier", grant=ADAPTER)
        with openai.OpenAI(base_url=gw.base_url, api_key=secret, max_retries=0,
                           timeout=120) as sdk:
            listed = {m.id: m for m in sdk.models.list()}
            assert listed[ADAPTER].model_extra["parent"] == PUBLIC_MODEL
            for i in range(REQUESTS):
                answer = sdk.chat.completions.create(
                    model=ADAPTER, max_tokens=8, temperature=0,
                    messages=[{"role": "user", "content": f"hello {i}"}])
                assert answer.usage is not None and answer.usage.completion_tokens > 0
                assert answer.choices[0].message.content is not None
            stream = sdk.chat.completions.create(
                model=ADAPTER, max_tokens=8, stream=True,
                messages=[{"role": "user", "content": "a stream"}])
            assert sum(1 for chunk in stream if chunk.choices) > 0
        holding = [r for r in replicas if ADAPTER in _held(r)]
        assert len(holding) == 1, [r.name for r in holding]  # loaded at runtime, on one
        records = _records(gw, REQUESTS + 1)
        assert {r["adapter"] for r in records} == {ADAPTER}
        assert {r["model"] for r in records} == {PUBLIC_MODEL}
        assert all(r["status"] == 200 and r["completion_tokens"] > 0 for r in records)
        replica_ids = {r["replica"] for r in records}
        assert len(replica_ids) == 1, replica_ids  # routed back to the one holding it
        index = int(replica_ids.pop().rsplit("-", 1)[1])
        assert replicas[index] is holding[0]
    finally:
        _admin(gw, "DELETE", f"/adapters/{made['id']}")
        for replica in replicas:  # leave the engines as the other tests expect them
            if ADAPTER in _held(replica):
                request = urllib.request.Request(
                    f"{replica.base_url}/unload_lora_adapter", method="POST",
                    data=orjson.dumps({"lora_name": ADAPTER}),
                    headers={"Content-Type": "application/json"})
                urllib.request.urlopen(request, timeout=30).close()
