"""The pipeline kernel: one declared stage order, shared by HTTP and in-process callers, and a
settle stage that accounts for every request that started, however it ended."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from tests.support.asgi import request
from tests.support.fake_upstream import FakeUpstream
from tests.unit.conftest import ADMIN_KEY, AUTH, Harness, make_harness, platform_yaml

from inferenceops.outbox import UsageRecord
from inferenceops.pipeline import kernel
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.kernel import STAGES, Pipeline, Stage
from inferenceops.pipeline.sink import CollectingSink
from inferenceops.platform import Endpoint, Snapshot
from inferenceops.platform.policy import Policy, Price, from_nanos

CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}
EMBED = {"model": "embed-model", "input": "hello"}


def usage_records(h: Harness) -> list[UsageRecord]:
    records, _ = h.app.state.outbox.take(10_000)
    return [r for r in records if isinstance(r, UsageRecord)]


def traced(pipeline: Pipeline, seen: list[str]) -> None:
    """Make ``pipeline`` note each stage as it runs (same functions, same order)."""

    def tracing(stage: Stage) -> Stage:
        async def run(p: Pipeline, snapshot: Snapshot, facts: RequestFacts, sink: object) -> None:
            seen.append(stage.name)
            await stage.run(p, snapshot, facts, sink)  # type: ignore[arg-type]
        return stage._replace(run=run)

    pipeline.stages = tuple(tracing(s) for s in pipeline.stages)


async def in_process(h: Harness, endpoint: Endpoint, doc: dict[str, object],
                     api_key: str = ADMIN_KEY) -> CollectingSink:
    facts = RequestFacts.for_call(endpoint, orjson.dumps(doc), api_key=api_key)
    sink = CollectingSink()
    await h.app.state.pipeline.run(h.app.state.snapshot, facts, sink)
    return sink


def test_the_declared_order_is_the_documented_one() -> None:
    assert [s.name for s in STAGES] == ["size", "authenticate", "parse", "authorize", "guard", "admit",
                                        "route+forward", "settle"]
    assert [s.name for s in STAGES if s.always] == ["settle"]
    for name in [s.name for s in STAGES]:
        assert name in (kernel.__doc__ or ""), f"stage {name!r} is not documented in the kernel"


@pytest.mark.parametrize("via", ["http", "in-process"])
async def test_http_and_in_process_callers_run_every_stage_in_the_declared_order(
        harness: Harness, via: str) -> None:
    seen: list[str] = []
    traced(harness.app.state.pipeline, seen)
    if via == "http":
        reply = await request(harness.app, "POST", "/v1/chat/completions",
                              body=orjson.dumps(CHAT), headers=AUTH)
        assert reply.status == 200
    else:
        assert (await in_process(harness, Endpoint.CHAT, CHAT)).status == 200
    assert seen == [s.name for s in STAGES]


async def test_a_refused_request_stops_at_its_stage_and_is_still_settled(harness: Harness) -> None:
    seen: list[str] = []
    traced(harness.app.state.pipeline, seen)
    reply = await request(harness.app, "POST", "/v1/chat/completions",
                          body=orjson.dumps({**CHAT, "model": "nope"}), headers=AUTH)
    assert reply.status == 404
    assert seen == ["size", "authenticate", "parse", "authorize", "settle"]
    (record,) = usage_records(harness)
    assert (record.status, record.error_code, record.model) == (404, "model_not_found", None)
    assert (record.prompt_tokens, record.completion_tokens, record.cost_nanos) == (0, 0, 0)


async def test_chat_stream_and_embedding_run_through_the_pipeline_without_a_server(
        harness: Harness) -> None:
    chat = await in_process(harness, Endpoint.CHAT, CHAT)
    assert chat.status == 200 and orjson.loads(chat.body)["choices"][0]["message"]["content"]
    stream = await in_process(harness, Endpoint.CHAT, STREAM)
    events = [e for e in stream.body.split(b"\n\n") if e]
    assert stream.status == 200 and stream.ended and events[-1] == b"data: [DONE]"
    assert all(b'"usage"' not in e for e in events)  # asked for on the client's behalf, hidden
    embedding = await in_process(harness, Endpoint.EMBEDDINGS, EMBED)
    assert embedding.status == 200 and orjson.loads(embedding.body)["data"]
    records = usage_records(harness)
    assert [(r.endpoint, r.stream, r.status, r.tokens_reported) for r in records] == [
        ("chat/completions", False, 200, True), ("chat/completions", True, 200, True),
        ("embeddings", False, 200, True)]
    assert records[1].completion_tokens == harness.fake.stream_chunks  # the engine's own count
    assert all(r.key_id == "key_bootstrap" and r.deployment and r.replica and r.latency_ms > 0
               for r in records)


async def test_settle_prices_what_the_engine_reported(harness: Harness) -> None:
    state = harness.app.state
    state.snapshot = Snapshot(state.snapshot.catalog, state.snapshot.identity,
                              Policy(prices={"chat-model": Price.per_token(input=10, output=1000)}))
    assert (await in_process(harness, Endpoint.CHAT, CHAT)).status == 200
    (record,) = usage_records(harness)
    assert record.cost_nanos == 10 * record.prompt_tokens + 1000 * record.completion_tokens > 0


@pytest.mark.parametrize("batch", [False, True])
async def test_a_batch_line_is_background_work_priced_with_the_batch_discount(
        harness: Harness, batch: bool) -> None:
    state = harness.app.state
    price = Price(10 * 1_000_000, 1000 * 1_000_000, batch_discount_bp=5_000)  # 50 % off batches
    state.snapshot = Snapshot(state.snapshot.catalog, state.snapshot.identity,
                              Policy(prices={"chat-model": price}))
    facts = RequestFacts.for_call(Endpoint.CHAT, orjson.dumps(CHAT), api_key=ADMIN_KEY,
                                  priority="interactive", batch=batch)
    sink = CollectingSink()
    await state.pipeline.run(state.snapshot, facts, sink)
    assert sink.status == 200
    # A batch line's record goes back to its executor, stored with the line (``batch.executor``).
    (record,) = [facts.usage_record] if batch else usage_records(harness)
    assert record is not None and (facts.usage_record is None) is not batch
    full = 10 * record.prompt_tokens + 1000 * record.completion_tokens
    assert record.cost_nanos == (-(-full // 2) if batch else full) > 0
    assert record.priority == ("batch" if batch else "interactive")


async def test_the_usage_record_keeps_the_prompt_tokens_the_engines_cache_served(
        harness: Harness) -> None:
    harness.fake.cached_prompt_tokens = 2
    assert (await in_process(harness, Endpoint.CHAT, CHAT)).status == 200
    (record,) = usage_records(harness)
    assert (record.prompt_tokens, record.cached_tokens, record.tokens_reported) == (3, 2, True)


async def test_tokens_and_cost_per_team_and_model_reach_metrics(harness: Harness) -> None:
    state = harness.app.state
    state.snapshot = Snapshot(state.snapshot.catalog, state.snapshot.identity,
                              Policy(prices={"chat-model": Price.per_token(input=10, output=1000)}))
    for _ in range(2):
        assert (await in_process(harness, Endpoint.CHAT, CHAT)).status == 200
    text = (await request(harness.app, "GET", "/metrics")).body.decode()
    (record, _) = usage_records(harness)
    labels = f'{{team="none",model="{record.model}"}}'  # the admin key has no team
    assert f"inferenceops_usage_requests_total{labels} 2" in text
    assert f"inferenceops_usage_prompt_tokens_total{labels} {2 * record.prompt_tokens}" in text
    assert record.cost_nanos > 0
    assert f"inferenceops_usage_cost_total{labels} {from_nanos(2 * record.cost_nanos)}" in text


async def test_a_caller_that_leaves_mid_stream_is_settled_with_what_was_sent(
        harness: Harness) -> None:
    harness.fake.chunk_delay_s = 0.05
    reply = await request(harness.app, "POST", "/v1/chat/completions",
                          body=orjson.dumps(STREAM), headers=AUTH, disconnect_after=2)
    assert reply.status == 200
    for _ in range(200):  # settle runs once the forward stage has seen the caller go
        records = usage_records(harness)
        if records:
            break
        await asyncio.sleep(0.01)
    (record,) = records
    assert record.error_code == "client_disconnected" and not record.tokens_reported
    assert 0 < record.completion_tokens < harness.fake.stream_chunks


async def test_strangers_get_no_usage_record(harness: Harness) -> None:
    reply = await request(harness.app, "POST", "/v1/chat/completions", body=orjson.dumps(CHAT),
                          headers={"Authorization": "Bearer nope"})
    assert reply.status == 401
    assert usage_records(harness) == []


async def test_the_deployments_routing_strategy_picks_the_replica(
        fake: tuple[FakeUpstream, int]) -> None:
    upstream, port = fake
    yaml = platform_yaml(port).replace(
        f"    replicas:\n      - url: http://127.0.0.1:{port}/v1\n    timeouts",
        f"    routing: round_robin\n    replicas:\n      - url: http://127.0.0.1:{port}/v1\n"
        f"      - url: http://127.0.0.1:{port}/v1/\n    timeouts", 1)
    h = await make_harness(yaml, upstream, port)
    try:
        for _ in range(4):
            assert (await in_process(h, Endpoint.CHAT, CHAT)).status == 200
        assert [r.replica for r in usage_records(h)] == ["fake-0", "fake-1", "fake-0", "fake-1"]
    finally:
        await h.app.state.stop()


def test_deferred_response_headers_are_written_once_after_the_ones_already_given() -> None:
    """A stage may leave its headers to be written when the response starts: they follow the
    headers given outright, each source is called once, and asking again writes nothing anew."""
    facts = RequestFacts.for_call(Endpoint.CHAT, b"{}", api_key="sk-x")
    assert facts.answer_headers() == []
    calls: list[str] = []

    def rate_limits() -> list[tuple[bytes, bytes]]:
        calls.append("rate")
        return [(b"x-ratelimit-limit-requests", b"10")]

    facts.defer_response_headers(rate_limits)
    facts.add_response_headers([(b"x-a", b"1")])
    assert calls == []
    assert facts.answer_headers() == [(b"x-a", b"1"), (b"x-ratelimit-limit-requests", b"10")]
    assert facts.answer_headers() == [(b"x-a", b"1"), (b"x-ratelimit-limit-requests", b"10")]
    assert calls == ["rate"]
