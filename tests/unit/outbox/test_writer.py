"""The outbox writer on SQLite and PostgreSQL: batches stored in one transaction, failures kept
and retried, everything flushed at stop, counters for /metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.unit.store import conftest as store

from inferenceops.outbox import AuditRecord, Outbox, UsageRecord
from inferenceops.outbox.writer import OutboxWriter
from inferenceops.store import Database, repo
from inferenceops.store.errors import StoreError
from inferenceops.store.repo.usage import count_usage, list_usage
from inferenceops.supervisor import Supervisor

# The store tests' fixtures: a migrated database per test, on each backend.
postgres, templates, backend, store_url, db = (store.postgres, store.templates, store.backend,
                                               store.store_url, store.db)


def usage(n: int, key: str = "key_a") -> UsageRecord:
    return UsageRecord(f"req-{n}", 1_780_000_000.0 + n, key, "team_a", "usr_a", "user", "m", "d",
                       "d-0", "chat/completions", "interactive", n % 2 == 0, 10, n, True, 7 * n, 200,
                       None, 12.5, 3.25 if n else None)


async def test_a_batch_of_every_kind_is_stored_in_one_flush(store_url: str, db: Database) -> None:
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "t")
        user = await repo.create_user(tx, "u@x.io")
        key = await repo.create_api_key(tx, name="k", prefix="sk-io-k", digest=b"k" * 32,
                                        user_id=user.id, team_id=team.id)
    box = Outbox()
    for n in range(3):
        box.put(usage(n, key.id))
    box.put(AuditRecord("system:admission", "budget.soft_exceeded", "budget", "bud:x",
                        {"limit_nanos": 5}))
    box.note_key_use(key.id)
    writer = OutboxWriter(box, store_url)
    try:
        assert await writer.flush() == 4
    finally:
        await writer.stop()
    async with db.read() as tx:
        stored = await list_usage(tx, key_id=key.id)
        audits = (await repo.list_audit(tx, action="budget.soft_exceeded")).items
        used = (await repo.get_api_key(tx, key.id)).last_used_at
    assert stored == tuple(usage(n, key.id) for n in range(3))  # every field round-trips
    assert [a.after for a in audits] == [{"limit_nanos": 5}]
    assert used is not None and used <= datetime.now(UTC)
    assert box.written == {"usage": 3, "audit": 1, "body": 0, "key_use": 1} and box.last_batch == 4
    assert box.batch_sizes.count == box.write_seconds.count == 1 and box.batch_sizes.total == 4


async def test_a_failed_write_keeps_the_batch(tmp_path: object) -> None:
    box = Outbox()
    box.put(usage(1))
    box.note_key_use("key_a")
    writer = OutboxWriter(box, "sqlite+aiosqlite:////nonexistent-dir/none.db")
    with pytest.raises(StoreError):
        await writer.flush()
    assert box.depth == 1 and box.written["usage"] == 0 and box.take(0)[1] == {"key_a"}
    assert box.write_seconds.count == 0  # only stored batches are timed; failures are counted
    with pytest.raises(StoreError):  # stop tries once more, and says it failed: no endless loop
        await writer.stop()
    assert box.depth == 1


async def test_run_flushes_on_its_tick_and_stop_flushes_the_rest(store_url: str, db: Database) -> None:
    box = Outbox(batch_size=50)
    writer = OutboxWriter(box, store_url, flush_s=0.05)
    supervisor = Supervisor()
    supervisor.add(writer)
    await supervisor.start()
    try:
        box.put(usage(1))
        for _ in range(200):
            if box.written["usage"] == 1:
                break
            await asyncio.sleep(0.01)
        assert box.written["usage"] == 1  # within a tick, no batch needed
        for n in range(2, 130):
            box.put(usage(n))
    finally:
        await supervisor.stop()  # flushes everything still queued
    assert box.depth == 0
    async with db.read() as tx:
        assert await count_usage(tx) == 129


async def test_stop_waits_for_the_batch_being_written_instead_of_cancelling_it() -> None:
    """Cancelling run mid-write would interrupt the batch's transaction: on SQLite, cut short
    while the driver worked (opening the connection, BEGIN IMMEDIATE), the abandoned
    connection kept the write lock, so stop's flush waited out the busy timeout, failed, and
    the queue was lost at exit. So stop lets run's batch finish, then writes the rest."""
    inside, release = asyncio.Event(), asyncio.Event()
    seen: list[str] = []

    class Held(OutboxWriter):
        async def _write(self, records: list[Any], keys: set[str]) -> None:
            seen.append(f"batch of {len(records)}")
            inside.set()
            try:
                await release.wait()
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise
            self._outbox.written["usage"] += len(records)

    box = Outbox(batch_size=10)
    supervisor = Supervisor()
    supervisor.add(Held(box, "sqlite+aiosqlite://", flush_s=60.0))
    await supervisor.start()
    for n in range(25):
        box.put(usage(n))
    await inside.wait()  # run is writing its first full batch
    stopping = asyncio.create_task(supervisor.stop())
    for _ in range(20):  # stop cancels run (loop turns, not time)
        await asyncio.sleep(0)
    assert not stopping.done()
    release.set()
    await stopping
    assert seen == ["batch of 10", "batch of 10", "batch of 5"]
    assert box.depth == 0 and box.written["usage"] == 25 and box.write_failures == 0
