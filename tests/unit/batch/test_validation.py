"""The ``validating`` phase (``batch.validation``), on SQLite and PostgreSQL: a batch whose file
holds more requests than the inline limit is created ``validating`` and checked by the
executor afterwards — the same errors, line by line, as a check inside the create call —
then runs; cancelled or past its window while it waits, it ends without running a line;
one executor checks it, and a missing file or a revoked key fails it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.batch.batch_world import World, make_world, request_lines
from tests.unit.conftest import Harness

from inferenceops.batch.validation import Validator
from inferenceops.store import Database
from inferenceops.store.records import ToValidate
from inferenceops.store.repo.batch_validate import take_for_validation

pytestmark = pytest.mark.usefixtures("backend")

#: A file of more than this many requests is validated after the create call answered.
INLINE = 2


@pytest.fixture
async def world(store_url: str, tmp_path: Path, harness: Harness) -> AsyncIterator[World]:
    w = make_world(store_url, tmp_path, harness, inline_lines=INLINE)
    yield w
    await w.close()


def mixed_lines() -> bytes:
    """Four requests: line 2 names another endpoint, line 4 a model team B may not use."""
    return (request_lines(1) + request_lines(1, url="/v1/embeddings", model="embed-model")
            .replace(b"req-1", b"req-2") + b"\n"
            + request_lines(1, model="secret-model").replace(b"req-1", b"req-3")
            + request_lines(1).replace(b"req-1", b"req-4"))


async def test_a_large_file_is_validating_at_create_then_checked_then_run(world: World) -> None:
    file_id = await world.upload(request_lines(INLINE + 1))
    created = (await world.create(file_id)).json()
    assert created["status"] == "validating"
    assert created["in_progress_at"] is None and created["errors"] is None
    assert created["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert created["expires_at"] - created["created_at"] == 24 * 3600
    assert await world.executor.validator.due() == 1
    checked = await world.batch(created["id"])
    assert checked["status"] == "in_progress" and checked["in_progress_at"] is not None
    assert checked["request_counts"]["total"] == INLINE + 1
    await world.executor.drain()
    batch = await world.batch(created["id"])
    assert batch["status"] == "completed"
    out = await world.content(batch["output_file_id"])
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(1, INLINE + 2)]


async def test_a_small_file_is_still_checked_inside_the_create_call(world: World) -> None:
    file_id = await world.upload(request_lines(INLINE))
    assert (await world.create(file_id)).json()["status"] == "in_progress"


async def test_the_later_check_names_the_same_lines_as_the_create_call_would(
        store_url: str, tmp_path: Path, harness: Harness, world: World) -> None:
    inline = make_world(store_url, tmp_path / "inline", harness, inline_lines=1000)
    try:
        now = (await inline.create(await inline.upload(mixed_lines(), "b"), "b")).json()
    finally:
        await inline.close()
    later = (await world.create(await world.upload(mixed_lines(), "b"), "b")).json()
    assert (now["status"], later["status"]) == ("failed", "validating")
    await world.executor.drain()
    batch = await world.batch(later["id"], "b")
    assert batch["status"] == "failed" and batch["failed_at"] is not None
    assert batch["errors"] == now["errors"]
    assert [(e["code"], e["line"]) for e in batch["errors"]["data"]] == [
        ("mismatched_endpoint", 2), ("model_not_found", 4)]
    assert batch["request_counts"]["total"] == 0 and world.executor.ran == 0


async def test_cancelled_while_validating_it_ends_cancelled_without_a_line(world: World) -> None:
    batch_id = (await world.create(await world.upload(request_lines(4)))).json()["id"]
    cancelling = (await world.post(f"/v1/batches/{batch_id}/cancel", b"")).json()
    assert cancelling["status"] == "cancelling"
    await world.executor.drain()
    batch = await world.batch(batch_id)
    assert batch["status"] == "cancelled" and world.executor.ran == 0
    assert batch["output_file_id"] is None and batch["error_file_id"] is None


async def test_a_cancel_during_the_check_wins_over_its_result(world: World) -> None:
    batch_id = (await world.create(await world.upload(request_lines(4)))).json()["id"]
    validator = world.executor.validator
    original = validator._check  # noqa: SLF001 (the check's own seam)

    async def cancelled_meanwhile(batch: ToValidate) -> Any:
        await world.post(f"/v1/batches/{batch_id}/cancel", b"")
        return await original(batch)

    validator._check = cancelled_meanwhile  # type: ignore[method-assign]  # noqa: SLF001
    assert await validator.due() == 0
    await world.executor.drain()
    batch = await world.batch(batch_id)
    assert batch["status"] == "cancelled" and batch["request_counts"]["total"] == 0


async def test_never_checked_before_its_window_ends_it_expires(world: World) -> None:
    batch_id = (await world.create(await world.upload(request_lines(3)),
                                   completion_window="1h")).json()["id"]
    world.clock.advance(3601)
    await world.executor.drain()
    batch = await world.batch(batch_id)
    assert batch["status"] == "expired" and batch["expired_at"] is not None
    assert world.executor.ran == 0 and world.executor.validator.checked == 0


async def test_one_executor_checks_a_batch_and_a_missing_file_fails_it(world: World) -> None:
    file_id = await world.upload(request_lines(3))
    batch_id = (await world.create(file_id)).json()["id"]
    (world.root / f"{file_id}.jsonl").unlink()
    executor = world.executor
    other = Validator(executor._session, executor.files, executor._snapshot,  # noqa: SLF001
                      executor._key, "another-executor", world.clock, 60)  # noqa: SLF001
    db = Database(world.store_url)
    try:
        async with db.transaction() as tx:  # the other executor holds it (mid-check)
            assert await take_for_validation(tx, batch_id, "another-executor", world.clock(), 60)
    finally:
        await db.close()
    assert await executor.validator.due() == 0  # held: not this one's
    world.clock.advance(61)  # its lease ended (it died): the next executor takes over
    assert await executor.validator.due() == 1
    batch = await world.batch(batch_id)
    assert batch["status"] == "failed"
    assert [(e["code"], e["param"]) for e in batch["errors"]["data"]] == [
        ("file_not_found", "input_file_id")]
    assert await other.due() == 0  # settled: nothing left to check


async def test_a_key_revoked_before_the_check_fails_the_batch(world: World) -> None:
    batch_id = (await world.create(await world.upload(request_lines(3)))).json()["id"]
    executor = world.executor
    revoked = Validator(executor._session, executor.files, executor._snapshot,  # noqa: SLF001
                        lambda snapshot, key_id: None, "v", world.clock, 60)
    assert await revoked.due() == 1
    batch = await world.batch(batch_id)
    assert batch["status"] == "failed"
    assert batch["errors"]["data"][0]["code"] == "invalid_api_key"


async def test_the_running_service_checks_beside_its_lines_and_runs_the_batch(
        world: World) -> None:
    world.executor.poll_s = 0.01
    batch_id = (await world.create(await world.upload(request_lines(5)))).json()["id"]
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
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 5
    assert world.executor.validator.checked == 1
