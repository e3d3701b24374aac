"""Spend survives restarts on the embedded default (the in-memory admission ledger).

A real ``serve`` process on its SQLite store, a priced model and a monthly budget on
every key. What the budget has spent (``GET /v1/quota``) is read before and after:

* a graceful restart (SIGTERM, start again on the same data folder): the same amount,
  which is the usage ledger's sum;
* ``kill -9`` under load, then a start: the ledger's sum exactly (the counters are rebuilt
  from it), and the ledger misses at most the requests answered in the last flush interval
  (the outbox's stated loss bound).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path

import aiohttp
import orjson
import pytest

from inferenceops.platform.policy import from_nanos
from inferenceops.store import Database
from inferenceops.store.repo.usage import list_usage
from tests.integration._harness import ADMIN_KEY, FakeUpstreams, Gateway, SpawnGateway, platform_yaml
from tests.support.fake_upstream import FakeUpstream
from tests.support.postgres import run_sync

pytestmark = pytest.mark.integration

FLUSH_S = 0.3
WRITE_MARGIN_S = 0.5
#: The fake engine reports 3 prompt + 1 completion tokens: 4,000,000 nano-dollars a request.
PRICE = {"input_per_million": "1000", "output_per_million": "1000"}
COST = 4 * 1000 * 1000
BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def _config(url: str) -> str:
    deployments = [{"name": "fake", "engine": "openai", "served_model": "ok",
                    "replicas": [{"url": url}]}]
    models = [{"name": "chat", "deployment": "fake", "price": PRICE}]
    text = platform_yaml(deployments, models)
    return text + ("budgets:\n"
                   "  - {key: \"*\", amount: \"1000000\", currency: USD, period: monthly, "
                   "mode: hard}\n")


def _start(spawn_gateway: SpawnGateway, config: str, data_dir: Path, name: str) -> Gateway:
    return spawn_gateway(config=config, name=name, data_dir=data_dir,
                         env={"INFERENCEOPS_OUTBOX_FLUSH_S": str(FLUSH_S)})


def _spent(gw: Gateway) -> Decimal:
    request = urllib.request.Request(f"{gw.base_url}/quota",
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        (budget,) = orjson.loads(resp.read())["budgets"]
    return Decimal(budget["spent"])


def _ledger(data_dir: Path) -> tuple[Decimal, set[str]]:
    """(the ledger's cost sum, its request ids)."""
    async def read() -> tuple[Decimal, set[str]]:
        db = Database(f"sqlite+aiosqlite:///{data_dir / 'inferenceops.db'}")
        try:
            async with db.read() as tx:
                records = await list_usage(tx, limit=1_000_000)
        finally:
            await db.close()
        return (Decimal(from_nanos(sum(r.cost_nanos for r in records))),
                {r.request_id for r in records})
    return run_sync(read())


async def _send(gw: Gateway, count: int | None, answered: dict[str, float],
                seconds: float = 30.0) -> None:
    """``count`` requests (None: until the server stops answering), eight at a time."""
    remaining = [count]
    deadline = time.monotonic() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline and (remaining[0] is None or remaining[0] > 0):
            if remaining[0] is not None:
                remaining[0] -= 1
            rid = uuid.uuid4().hex
            try:
                async with session.post(f"{gw.base_url}/chat/completions", json=BODY, headers={
                        "Authorization": f"Bearer {ADMIN_KEY}", "x-request-id": rid}) as resp:
                    await resp.read()
                    if resp.status == 200:
                        answered[rid] = time.monotonic()
            except (TimeoutError, aiohttp.ClientError):
                return

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.gather(*(client(session) for _ in range(8)))


def test_a_graceful_restart_keeps_every_cent(spawn_gateway: SpawnGateway,
                                             upstreams: FakeUpstreams, tmp_path: Path) -> None:
    config, data = _config(upstreams.serve(FakeUpstream())), tmp_path / "data"
    gw = _start(spawn_gateway, config, data, "before")
    answered: dict[str, float] = {}
    asyncio.run(_send(gw, 60, answered))
    assert len(answered) == 60
    time.sleep(FLUSH_S * 3)
    before = _spent(gw)
    assert before == Decimal(from_nanos(60 * COST))
    assert gw.stop() in (0, -signal.SIGTERM)
    after = _start(spawn_gateway, config, data, "after")
    ledger, _ = _ledger(data)
    assert _spent(after) == before == ledger  # not zero: rebuilt from the ledger


def test_kill_9_then_start_spends_what_the_ledger_holds(spawn_gateway: SpawnGateway,
                                                       upstreams: FakeUpstreams,
                                                       tmp_path: Path) -> None:
    config, data = _config(upstreams.serve(FakeUpstream())), tmp_path / "data"
    gw = _start(spawn_gateway, config, data, "killed")
    answered: dict[str, float] = {}
    killed_at = 0.0

    async def scenario() -> None:
        nonlocal killed_at
        load = asyncio.create_task(_send(gw, None, answered))
        started = time.monotonic()
        while len(answered) < 200 or time.monotonic() - started < 6 * FLUSH_S:
            await asyncio.sleep(0.05)
        killed_at = time.monotonic()
        os.killpg(gw.proc.pid, signal.SIGKILL)
        await load

    asyncio.run(scenario())
    gw.stop()
    restarted = _start(spawn_gateway, config, data, "restarted")
    ledger, stored = _ledger(data)
    assert _spent(restarted) == ledger > 0
    lost = set(answered) - stored
    recent = {rid for rid, at in answered.items() if at > killed_at - FLUSH_S - WRITE_MARGIN_S}
    print(f"kill -9: {len(lost)} of {len(answered)} answered requests not in the ledger; "
          f"spent after restart {_spent(restarted)} = ledger {ledger}")
    assert lost <= recent, "a request answered before the last flush was lost"
    assert Decimal(from_nanos(len(answered) * COST)) - ledger <= Decimal(
        from_nanos(len(recent) * COST))
    # And the restarted worker keeps counting from there.
    more: dict[str, float] = {}
    asyncio.run(_send(restarted, 10, more))
    assert _spent(restarted) == ledger + Decimal(from_nanos(10 * COST))
