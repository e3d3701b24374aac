"""Batch rows (store.repo.batches, batch_finish) on SQLite and PostgreSQL: an owner sees only its
own batches; claims lease each line to one claimer, even with several claiming at once; a line
whose lease ended is claimed again and recorded once; finalising is taken by one executor."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from inferenceops.store import Database
from inferenceops.store.ids import new_sortable_id
from inferenceops.store.records import BatchLine, BatchRecord, FileOwner
from inferenceops.store.repo import batch_finish as finish
from inferenceops.store.repo import batches as repo

TEAM_A = FileOwner("team_a", "usr_1")
TEAM_B = FileOwner("team_b", "usr_1")
T0 = datetime(2026, 12, 1, tzinfo=UTC)
LEASE = 60.0


def record(owner: FileOwner = TEAM_A, lines: int = 3, *, at: datetime = T0,
           status: str = "in_progress") -> BatchRecord:
    return BatchRecord(new_sortable_id("batch", at), owner.team_id, owner.principal_id, "key_x",
                       "/v1/chat/completions", "file-x", "24h", status, {"k": "v"}, (), lines, 0,
                       0, None, None, at, at + timedelta(hours=24), {"in_progress_at": at})


async def add(db: Database, lines: int = 3, **kw: object) -> BatchRecord:
    rec = record(lines=lines, **kw)  # type: ignore[arg-type]
    async with db.transaction() as tx:
        await repo.add_batch(tx, rec, [BatchLine(i, f"c{i}", i * 10, 10) for i in range(1, lines + 1)])
    return rec


async def claim(db: Database, owner: str, at: datetime = T0, limit: int = 10) -> list[int]:
    async with db.transaction() as tx:
        return [c.line for c in await repo.claim_lines(tx, owner, at, LEASE, limit)]


async def test_a_batch_is_seen_by_its_owner_only_and_counts_its_lines(db: Database) -> None:
    rec = await add(db)
    async with db.read() as tx:
        got = await repo.get_batch(tx, rec.id, TEAM_A)
        assert got is not None and (got.total, got.completed, got.failed) == (3, 0, 0)
        assert got.metadata == {"k": "v"} and got.times == {"in_progress_at": T0}
        assert await repo.get_batch(tx, rec.id, TEAM_B) is None
        assert await repo.list_batches(tx, TEAM_B, after=None, limit=10) == ([], False)
        assert await repo.input_in_use(tx, "file-x")
    async with db.transaction() as tx:
        assert await repo.cancel_batch(tx, rec.id, TEAM_B, T0) is None
        cancelled = await repo.cancel_batch(tx, rec.id, TEAM_A, T0)
    assert cancelled is not None and cancelled.status == "cancelling"


async def test_listing_pages_newest_first(db: Database) -> None:
    made = [await add(db, at=T0 + timedelta(seconds=i)) for i in range(5)]
    async with db.read() as tx:
        page, more = await repo.list_batches(tx, TEAM_A, after=None, limit=2)
        assert [b.id for b in page] == [made[4].id, made[3].id] and more
        page, more = await repo.list_batches(tx, TEAM_A, after=made[3].id, limit=10)
        assert [b.id for b in page] == [made[2].id, made[1].id, made[0].id] and not more


async def test_a_line_is_claimed_once_and_again_only_after_its_lease_ends(db: Database) -> None:
    rec = await add(db, lines=3)
    assert await claim(db, "x1", limit=2) == [1, 2]
    assert await claim(db, "x2") == [3]
    assert await claim(db, "x2") == []  # all held
    later = T0 + timedelta(seconds=LEASE + 1)
    assert await claim(db, "x2", at=later, limit=1) == [1]  # x1's lease ended: taken over
    async with db.read() as tx:
        assert await finish.outcomes(tx, rec.id, after_line=0, limit=10) == []  # none recorded
    async with db.transaction() as tx:
        claimed = await repo.claim_lines(tx, "x3", later, LEASE, 10)  # line 2: x1's lease ended
        assert [c.line for c in claimed] == [2, 3]
    # x1 comes back from the dead with line 1's answer: it no longer holds it, nothing is written
    async with db.transaction() as tx:
        first = (await tx.execute(select(repo.R.id).where(repo.R.line == 1))).scalar_one()
        assert not await repo.record_line(tx, first, "x1", ok=True, status_code=200, result="x1")
        assert await repo.record_line(tx, first, "x2", ok=True, status_code=200, result="x2")
        assert not await repo.record_line(tx, first, "x2", ok=True, status_code=200, result="again")
    async with db.read() as tx:
        (out,) = await finish.outcomes(tx, rec.id, after_line=0, limit=10)
    assert (out.line, out.state, out.result) == (1, "completed", "x2")


async def test_a_claim_carries_its_batchs_lines_not_yet_recorded(db: Database) -> None:
    """What the dispatcher weighs against the deadline (``DeadlineWatch``): counted from the
    lines, since the batch row's own counts are only written when it ends."""
    await add(db, lines=4)
    async with db.transaction() as tx:
        first = await repo.claim_lines(tx, "x1", T0, LEASE, 2)
        assert [c.left for c in first] == [4, 4]
        for line in first:
            assert await repo.record_line(tx, line.id, "x1", ok=True, status_code=200, result="")
    async with db.transaction() as tx:
        rest = await repo.claim_lines(tx, "x1", T0, LEASE, 1)
    assert [(c.line, c.left) for c in rest] == [(3, 2)]  # lines 3 and 4, this one included


async def test_the_batch_with_the_earliest_deadline_is_claimed_first(db: Database) -> None:
    day = await add(db, lines=2)  # created first, due in 24 hours
    hour = record(lines=2, at=T0 + timedelta(seconds=1))
    hour = BatchRecord(**{**{f: getattr(hour, f) for f in hour.__dataclass_fields__},
                          "expires_at": T0 + timedelta(hours=1)})
    async with db.transaction() as tx:
        await repo.add_batch(tx, hour, [BatchLine(i, f"h{i}", 0, 1) for i in (1, 2)])
        first = await repo.claim_lines(tx, "x1", T0, LEASE, 3)
    assert [(c.batch_id, c.line) for c in first] == [(hour.id, 1), (hour.id, 2), (day.id, 1)]


async def test_a_renewed_lease_is_not_taken_over(db: Database) -> None:
    await add(db, lines=2)
    assert await claim(db, "x1") == [1, 2]
    async with db.transaction() as tx:
        assert await repo.renew_leases(tx, "x1", T0 + timedelta(seconds=50), LEASE) == 2
    assert await claim(db, "x2", at=T0 + timedelta(seconds=LEASE + 1)) == []  # x1 is alive
    assert await claim(db, "x2", at=T0 + timedelta(seconds=50 + LEASE + 1)) == [1, 2]


async def test_a_line_put_back_waits_for_its_retry_time(db: Database) -> None:
    await add(db, lines=1)
    async with db.transaction() as tx:
        (line,) = await repo.claim_lines(tx, "x1", T0, LEASE, 10)
        assert await repo.retry_line(tx, line.id, "x1", T0 + timedelta(seconds=5))
    assert await claim(db, "x1", at=T0 + timedelta(seconds=4)) == []
    async with db.transaction() as tx:
        (again,) = await repo.claim_lines(tx, "x2", T0 + timedelta(seconds=5), LEASE, 10)
    assert again.attempts == 2


async def test_lines_of_a_batch_not_running_are_not_claimed(db: Database) -> None:
    rec = await add(db, lines=2)
    async with db.transaction() as tx:
        await repo.cancel_batch(tx, rec.id, TEAM_A, T0)
    assert await claim(db, "x1") == []
    await add(db, lines=1, at=T0 - timedelta(hours=25))  # past its window
    assert await claim(db, "x1") == []


async def test_several_claimers_at_once_never_get_the_same_line(store_url: str) -> None:
    dbs = [Database(store_url, pool_size=2) for _ in range(6)]
    try:
        await add(dbs[0], lines=300)
        got: dict[str, list[int]] = {}

        async def claimer(i: int) -> None:
            mine = got.setdefault(f"x{i}", [])
            for _ in range(300):  # bounded: a claim that hands lines out again must not hang
                lines = await claim(dbs[i], f"x{i}", limit=7)
                if not lines:
                    return
                mine.extend(lines)
                await asyncio.sleep(0)

        await asyncio.gather(*(claimer(i) for i in range(6)))
    finally:
        for d in dbs:
            await d.close()
    every = [line for lines in got.values() for line in lines]
    assert sorted(every) == list(range(1, 301))  # each line exactly once
    if "postgresql" in store_url:
        assert sum(1 for lines in got.values() if lines) > 1  # they really ran side by side


@pytest.mark.parametrize("target", ["completed", "expired", "cancelled"])
async def test_a_batch_is_finalised_by_one_executor(db: Database, target: str) -> None:
    rec = await add(db, lines=2)
    async with db.transaction() as tx:
        (l1, l2) = await repo.claim_lines(tx, "x1", T0, LEASE, 10)
        await repo.record_line(tx, l1.id, "x1", ok=True, status_code=200, result="{}")
    now = T0
    if target == "completed":
        async with db.transaction() as tx:
            await repo.record_line(tx, l2.id, "x1", ok=False, status_code=400, result="{}")
    elif target == "expired":
        now = T0 + timedelta(hours=25)
    else:
        async with db.transaction() as tx:
            await repo.cancel_batch(tx, rec.id, TEAM_A, T0)
        async with db.read() as tx:
            assert await finish.due_batches(tx, T0) == []  # line 2 is still running
        now = T0 + timedelta(seconds=LEASE + 1)
    async with db.read() as tx:
        ((bid, status, due),) = await finish.due_batches(tx, now)
    assert (bid, due) == (rec.id, target)
    async with db.transaction() as tx:
        assert await finish.take_batch(tx, bid, "x1", now, LEASE, status, due)
        assert not await finish.take_batch(tx, bid, "x2", now, LEASE, status, due)
        if due != "completed":
            assert await finish.close_open_lines(tx, bid, due) == 1
        assert await finish.finish_batch(tx, bid, "x1", now, status=due, output_file_id="file-o",
                                         error_file_id=None, completed=1, failed=1)
    async with db.read() as tx:
        done = await repo.get_batch(tx, bid, TEAM_A)
        assert await finish.due_batches(tx, now) == []
        assert not await repo.input_in_use(tx, "file-x")
    assert done is not None and done.status == target and f"{target}_at" in done.times
    assert (done.completed, done.failed, done.output_file_id) == (1, 1, "file-o")
