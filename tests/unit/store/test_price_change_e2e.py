"""End to end (SQLite and PostgreSQL): a price change scheduled mid-run through the store prices
the requests that start from its time on — and not one that started before it, however late
it settles — in the cost settle puts on each usage record.

The catalog's prices are in the store; the policy is built from it exactly as the snapshot feed
builds it on every revision (``platform_from_store`` → ``assemble_policy``) and swapped into a
gateway wired to a fake engine; requests run through the whole pipeline in process.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import orjson
from tests.support.fake_upstream import FakeUpstream
from tests.unit.conftest import ADMIN_KEY, Harness, make_harness, platform_yaml

from inferenceops.admission.config import StaticPolicy
from inferenceops.config.source import platform_from_store
from inferenceops.control.policy import assemble_policy
from inferenceops.metering.prices import PriceSpec, price_of
from inferenceops.outbox import UsageRecord
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.sink import CollectingSink
from inferenceops.platform import Endpoint, Snapshot
from inferenceops.store import Database, repo
from inferenceops.store.snapshot_builder import build_identity_and_rules

CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "hi"}]}
BEFORE = PriceSpec.model_validate({"input_per_million": "1", "output_per_million": "3"})
AFTER = PriceSpec.model_validate({"input_per_million": "2", "output_per_million": "5",
                                  "cached_input_per_million": "0.2"})
#: Time from scheduling the change to its start; the slow stream that spans it runs longer.
LEAD_S = 1.5


async def rebuild(h: Harness, db: Database) -> None:
    """What the snapshot feed does when the store's revision moves (prices from the store)."""
    _, data = await build_identity_and_rules(db)
    async with db.read() as tx:
        stored = await repo.load_catalog(tx)
    served = platform_from_store(stored, StaticPolicy(), loopback_base_url="http://127.0.0.1:1",
                                 environ={})
    old = h.app.state.snapshot
    h.app.state.snapshot = Snapshot(old.catalog, old.identity,
                                    assemble_policy(served.policy, served.prices, data))


async def run(h: Harness, doc: dict[str, object]) -> None:
    facts = RequestFacts.for_call(Endpoint.CHAT, orjson.dumps(doc), api_key=ADMIN_KEY)
    sink = CollectingSink()
    await h.app.state.pipeline.run(h.app.state.snapshot, facts, sink)
    assert sink.status == 200


def records(h: Harness) -> list[UsageRecord]:
    taken, _ = h.app.state.outbox.take(10_000)
    return [r for r in taken if isinstance(r, UsageRecord)]


async def test_a_scheduled_change_prices_requests_from_its_time_and_old_ones_keep_theirs(
        db: Database, fake: tuple[FakeUpstream, int]) -> None:
    upstream, port = fake
    h = await make_harness(platform_yaml(port), upstream, port)
    try:
        async with db.transaction() as tx:
            await repo.create_deployment(tx, {"name": "fake", "engine": "openai", "served_model": "ok",
                                              "replicas": [{"url": f"http://127.0.0.1:{port}/v1"}]})
            model = await repo.create_model(tx, {"name": "chat-model", "deployment": "fake",
                                                 "price": BEFORE.model_dump()})
        await rebuild(h, db)
        upstream.cached_prompt_tokens = 2
        await run(h, CHAT)  # A: long before the change

        change_at = datetime.fromtimestamp(time.time() + LEAD_S, UTC)
        async with db.transaction() as tx:  # what POST /models/{id}/prices does
            await repo.add_price(tx, model.id, AFTER, effective_from=change_at)
        await rebuild(h, db)
        # Ten chunks 0.3 s apart (under the deployment's 0.5 s between chunks): 3 s in all.
        upstream.stream_chunks, upstream.chunk_delay_s = 10, 2 * LEAD_S / 10
        spanning = asyncio.create_task(run(h, {**CHAT, "stream": True}))  # C: starts before it
        await spanning  # ... and settles after it
        assert time.time() > change_at.timestamp()
        upstream.chunk_delay_s = 0.0
        await run(h, CHAT)  # B: after the change

        a, c, b = records(h)
        start = change_at.timestamp()
        assert a.at < start < c.at < b.at
        assert (a.error_code, c.error_code, b.error_code) == (None, None, None)  # whole answers
        assert c.at - c.latency_ms / 1000 < start  # C started before the change
        assert a.cached_tokens == b.cached_tokens == 2 and a.prompt_tokens == b.prompt_tokens
        assert a.cost_nanos == price_of(BEFORE).cost(a.prompt_tokens, a.completion_tokens, 2)
        assert c.cost_nanos == price_of(BEFORE).cost(c.prompt_tokens, c.completion_tokens)
        assert b.cost_nanos == price_of(AFTER).cost(b.prompt_tokens, b.completion_tokens, 2)
        # 3 prompt tokens (2 from the cache) and 1 completion token: before, 3 × 1 + 1 × 3 per
        # million (no cached price: cached tokens cost input); after, 1 × 2 + 2 × 0.2 + 1 × 5.
        assert (a.prompt_tokens, a.completion_tokens) == (3, 1)
        assert (a.cost_nanos, b.cost_nanos) == (6_000, 7_400)
    finally:
        await h.app.state.stop()
