"""The executor's retries: a line refused for now (rate limit, overload) goes back to the queue
with backoff and runs again once due; a refusal waiting does not cure (a budget) or a line out of
attempts is a failed line; a line past its lease deadline is retried, never left running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.batch.batch_world import World, make_world, request_lines
from tests.unit.conftest import Harness

from inferenceops.batch.line_run import BACKOFF_MAX_S, backoff_s, run_line
from inferenceops.errors import BudgetExceeded, InferenceOpsError, RateLimited, UpstreamTimeout
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.sink import CollectingSink
from inferenceops.platform import Snapshot
from inferenceops.store.records import ClaimedLine

pytestmark = pytest.mark.usefixtures("backend")


class Refusing:
    """A pipeline that refuses the first ``refusals`` calls with ``error``, then answers 200."""

    def __init__(self, error: InferenceOpsError, refusals: int) -> None:
        self.error = error
        self.refusals = refusals
        self.calls = 0

    async def run(self, snapshot: Snapshot, facts: RequestFacts, sink: CollectingSink) -> None:
        self.calls += 1
        assert facts.batch and facts.key is not None and facts.authorization is None
        if self.calls <= self.refusals:
            raise self.error
        await sink.complete(facts, 200, b"application/json", b'{"ok": true}')


@pytest.fixture
async def world(store_url: str, tmp_path: Path, harness: Harness) -> AsyncIterator[World]:
    w = make_world(store_url, tmp_path, harness)
    yield w
    await w.close()


def _use(world: World, pipeline: Any, max_attempts: int = 8) -> None:
    world.executor.pipeline = pipeline
    world.executor.max_attempts = max_attempts


async def test_a_rate_limited_line_waits_its_backoff_then_completes(world: World) -> None:
    pipeline = Refusing(RateLimited("slow down"), refusals=2)
    _use(world, pipeline)
    batch_id = (await world.create(await world.upload(request_lines(1)))).json()["id"]
    await world.executor.drain()
    assert pipeline.calls == 1 and (await world.batch(batch_id))["status"] == "in_progress"
    world.clock.advance(BACKOFF_MAX_S)
    await world.executor.drain()
    assert pipeline.calls == 2
    world.clock.advance(BACKOFF_MAX_S)
    await world.executor.drain()
    batch = await world.batch(batch_id)
    assert pipeline.calls == 3 and batch["status"] == "completed"
    (line,) = await world.content(batch["output_file_id"])
    assert line["response"] == {"status_code": 200, "request_id": line["id"], "body": {"ok": True}}


@pytest.mark.parametrize(("error", "max_attempts"), [
    (BudgetExceeded("over budget"), 8),  # waiting does not refill a budget
    (UpstreamTimeout("too slow"), 1),  # retryable, but out of attempts
])
async def test_a_refusal_that_will_not_pass_is_a_failed_line(world: World, error: InferenceOpsError,
                                                             max_attempts: int) -> None:
    pipeline = Refusing(error, refusals=10)
    _use(world, pipeline, max_attempts)
    batch_id = (await world.create(await world.upload(request_lines(1)))).json()["id"]
    await world.executor.drain()
    batch = await world.batch(batch_id)
    assert pipeline.calls == 1 and batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 1, "completed": 0, "failed": 1}
    (line,) = await world.content(batch["error_file_id"])
    assert line["response"]["status_code"] == error.status
    assert line["response"]["body"]["error"]["code"] == error.code


def test_backoff_doubles_and_is_bounded() -> None:
    assert all(1.0 <= backoff_s(1) <= 2.0 for _ in range(50))
    assert all(4.0 <= backoff_s(3) <= 8.0 for _ in range(50))
    assert all(backoff_s(50) <= BACKOFF_MAX_S for _ in range(50))


async def test_a_line_that_outlasts_its_time_is_retried() -> None:
    class Slow:
        async def run(self, snapshot: Snapshot, facts: RequestFacts, sink: CollectingSink) -> None:
            import asyncio
            await asyncio.sleep(10)

    line = ClaimedLine(1, "batch_x", 1, "c1", 0, 10, 1, "/v1/chat/completions", "key_a1",
                       "file-x")
    from tests.unit.batch.conftest import KEYS
    raw = b'{"custom_id": "c1", "body": {"model": "m"}}'
    outcome = await run_line(Slow(), None, KEYS["a1"], line, raw,  # type: ignore[arg-type]
                             max_attempts=3, timeout_s=0.05)
    assert outcome.retry and not outcome.ok


async def test_the_running_service_keeps_lines_in_flight_and_finishes_batches(
        world: World) -> None:
    import asyncio

    world.executor.poll_s = 0.01
    world.executor.concurrency = 3
    batch_id = (await world.create(await world.upload(request_lines(7)))).json()["id"]
    task = asyncio.create_task(world.executor.run())
    try:
        for _ in range(1000):
            batch = await world.batch(batch_id)
            if batch["status"] == "completed":
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 7
    assert world.executor.ran == 7
