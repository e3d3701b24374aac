"""Batch API rows: batches as their owner sees them, and the leased work queue of their lines.

Two kinds of callers:

* the API (``batch.batch_service``): add, get, list and cancel a batch, always through a
  ``FileOwner`` filter in the query itself, so another team's batch is simply not found;
* the executor (``batch.executor``): claim lines under a lease, record each one's outcome
  once, put one back for a retry, and finalise a batch whose lines are all done.

Claiming is, per batch in deadline order, one statement ``UPDATE … WHERE id IN (SELECT …
LIMIT n FOR UPDATE SKIP LOCKED) RETURNING …``: on PostgreSQL concurrent claimers skip each other's locked rows
instead of waiting, so no row goes to two of them; on SQLite the clause is not rendered
and the write transaction (``BEGIN IMMEDIATE``) makes every claimer the single claimer in
turn. A line is claimable while ``pending`` (and past its retry time) or while ``running``
under a lease that has ended (its executor is presumed dead).

Recording is guarded by the lease: ``state = 'running' AND lease_owner = me``. An executor
whose lease ended and whose line was taken over records nothing, so a line executed twice
is written once. Line states (``tables_batch.REQUEST_STATES``)::

    pending ──claim──▶ running ──record──▶ completed | failed
       ▲                  │ (lease ends: claimable again)
       └──retry later─────┘
    pending | running ──batch expires──▶ expired      ──batch cancelled──▶ cancelled
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.outbox.records import UsageRecord
from inferenceops.store.errors import translating
from inferenceops.store.records import (
    BatchLine,
    BatchRecord,
    ClaimedLine,
    FileOwner,
)
from inferenceops.store.repo.usage import insert_usage
from inferenceops.store.tables_batch import UNFINISHED_BATCH, Batch, BatchRequest

MAX_LIST = 100  # OpenAI's largest page for GET /v1/batches
INSERT_CHUNK = 10_000
#: Batch states in which lines may still run or the batch still has to be finalised.
UNFINISHED = UNFINISHED_BATCH
OPEN_LINES = ("pending", "running")
_TIMES = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
          "cancelling_at", "cancelled_at")

R = BatchRequest
_REQUESTS: Table = BatchRequest.__table__  # type: ignore[assignment]  # Core: no ORM bulk cost
_UNNEST = text(
    "INSERT INTO batch_requests (batch_id, line, custom_id, byte_offset, byte_length, state, "
    "attempts) SELECT :batch, l, c, o, n, 'pending', 0 FROM unnest(CAST(:lines AS integer[]), "
    "CAST(:ids AS text[]), CAST(:offsets AS bigint[]), CAST(:lengths AS integer[])) AS t(l, c, o, n)")


def batch_record(row: Batch, counts: tuple[int, int] | None = None) -> BatchRecord:
    completed, failed = counts if counts is not None else (row.completed, row.failed)
    times = {name: value for name in _TIMES if (value := getattr(row, name)) is not None}
    return BatchRecord(row.id, row.team_id, row.principal_id, row.key_id, row.endpoint,
                       row.input_file_id, row.completion_window, row.status, row.user_metadata,
                       tuple(row.errors or ()), row.total, completed, failed, row.output_file_id,
                       row.error_file_id, row.created_at, row.expires_at, times,
                       row.output_expires_after_s)


def _owned(stmt: Any, owner: FileOwner) -> Any:
    if owner.team_id is not None:
        return stmt.where(Batch.team_id == owner.team_id)
    return stmt.where(Batch.team_id.is_(None), Batch.principal_id == owner.principal_id)


# ---- the API's side -------------------------------------------------------------------------

async def add_batch(session: AsyncSession, record: BatchRecord, lines: Sequence[BatchLine]) -> None:
    """Insert a batch and (when it is to run) one pending row per line, in the caller's transaction."""
    row = Batch(id=record.id, team_id=record.team_id, principal_id=record.principal_id,
                key_id=record.key_id, endpoint=record.endpoint, input_file_id=record.input_file_id,
                completion_window=record.completion_window, status=record.status,
                user_metadata=record.metadata, errors=list(record.errors) or None,
                total=record.total, completed=record.completed, failed=record.failed,
                created_at=record.created_at, expires_at=record.expires_at,
                output_expires_after_s=record.output_expires_after_s,
                **{name: record.times.get(name) for name in _TIMES})
    with translating(f"adding batch {record.id!r}"):
        session.add(row)
        await session.flush()
    await add_lines(session, record.id, lines)


async def add_lines(session: AsyncSession, batch_id: str, lines: Sequence[BatchLine]) -> None:
    """One pending row per line of ``batch_id``, in the caller's transaction (at create, or
    when a ``validating`` batch's check passed: ``batch_validate``)."""
    with translating(f"adding the lines of batch {batch_id!r}"):
        postgres = session.get_bind().dialect.name == "postgresql"
        for start in range(0, len(lines), INSERT_CHUNK):
            chunk = lines[start:start + INSERT_CHUNK]
            if postgres:  # one statement of four arrays: ~10x faster than rows of parameters
                await session.execute(_UNNEST, {
                    "batch": batch_id, "lines": [x.line for x in chunk],
                    "ids": [x.custom_id for x in chunk],
                    "offsets": [x.byte_offset for x in chunk],
                    "lengths": [x.byte_length for x in chunk]})
                continue
            await session.execute(insert(_REQUESTS), [
                {"batch_id": batch_id, "line": x.line, "custom_id": x.custom_id,
                 "byte_offset": x.byte_offset, "byte_length": x.byte_length, "state": "pending",
                 "attempts": 0} for x in chunk])


async def live_counts(session: AsyncSession, batch_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
    """(completed, failed) per batch, counted from its lines (expired lines count as failed)."""
    ids = list(batch_ids)
    counts: dict[str, list[int]] = {i: [0, 0] for i in ids}
    if not ids:
        return {}
    stmt = (select(R.batch_id, R.state, func.count()).where(
        R.batch_id.in_(ids), R.state.in_(("completed", "failed", "expired")))
        .group_by(R.batch_id, R.state))
    with translating("counting batch lines"):
        for batch_id, state, count in (await session.execute(stmt)).all():
            counts[batch_id][0 if state == "completed" else 1] += count
    return {i: (c[0], c[1]) for i, c in counts.items()}


async def _with_counts(session: AsyncSession, rows: Sequence[Batch]) -> list[BatchRecord]:
    running = await live_counts(session, [r.id for r in rows if r.status in UNFINISHED])
    return [batch_record(r, running.get(r.id)) for r in rows]


async def get_batch(session: AsyncSession, batch_id: str, owner: FileOwner) -> BatchRecord | None:
    """The batch if ``owner`` may see it, else None (absent and foreign alike)."""
    with translating(f"reading batch {batch_id!r}"):
        row = (await session.execute(
            _owned(select(Batch).where(Batch.id == batch_id), owner))).scalar_one_or_none()
        return None if row is None else (await _with_counts(session, [row]))[0]


async def list_batches(session: AsyncSession, owner: FileOwner, *, after: str | None,
                       limit: int) -> tuple[list[BatchRecord], bool]:
    """``owner``'s batches, newest first, those older than ``after``; and whether more follow."""
    stmt = _owned(select(Batch), owner)
    if after is not None:
        stmt = stmt.where(Batch.id < after)
    with translating("listing batches"):
        rows = (await session.execute(stmt.order_by(Batch.id.desc()).limit(limit + 1))).scalars().all()
        return await _with_counts(session, rows[:limit]), len(rows) > limit


async def cancel_batch(session: AsyncSession, batch_id: str, owner: FileOwner,
                       now: datetime) -> BatchRecord | None:
    """Ask a running batch to stop: ``cancelling`` (the executor finishes it as ``cancelled``).

    A batch already ending or ended is left as it is (cancelling twice is harmless).
    """
    with translating(f"cancelling batch {batch_id!r}"):
        await session.execute(_owned(update(Batch).where(
            Batch.id == batch_id, Batch.status.in_(("validating", "in_progress"))), owner)
            .values(status="cancelling", cancelling_at=now))
    return await get_batch(session, batch_id, owner)


async def input_in_use(session: AsyncSession, file_id: str) -> bool:
    """Whether an unfinished batch reads ``file_id`` (its lines are read from it as they run)."""
    stmt = select(Batch.id).where(Batch.input_file_id == file_id,
                                  Batch.status.in_(UNFINISHED)).limit(1)
    with translating(f"checking the batches of file {file_id!r}"):
        return (await session.execute(stmt)).first() is not None


# ---- the executor's side: lines --------------------------------------------------------------

def claimable(now: datetime) -> Any:
    """A line that may be claimed now: pending and due, or running under an ended lease."""
    return or_(and_(R.state == "pending", or_(R.not_before.is_(None), R.not_before <= now)),
               and_(R.state == "running", R.lease_until < now))


async def claim_lines(session: AsyncSession, owner: str, now: datetime, lease_s: float,
                      limit: int, *, share_within: timedelta | None = None,
                      weight: Callable[[str | None], float] | None = None) -> list[ClaimedLine]:
    """Lease up to ``limit`` lines of running batches to ``owner`` (see the module doc).

    Earliest deadline first: the running batches are taken in ``expires_at`` order and
    each gives what it has before the next is asked, so a 1-hour batch created after a
    24-hour one runs first. Asking batch by batch keeps each claim on the
    ``(batch_id, state)`` index instead of sorting every waiting line of every batch.

    ``share_within`` (the dispatcher's deadline bucket): the batches whose deadline is within
    it of the earliest one are equally urgent and share the claim in proportion to their
    team's ``weight`` (default 1), so one team's large batch does not fill every claim while
    another team's waits (``batch.dispatch`` then interleaves them by weight); later batches
    get what is left, in deadline order.
    """
    order = select(Batch.id, Batch.expires_at, Batch.team_id) \
        .where(Batch.status == "in_progress", Batch.expires_at > now) \
        .order_by(Batch.expires_at, Batch.id)
    claimed: list[Any] = []
    with translating("claiming batch lines"):
        running = (await session.execute(order)).all()
        quota = _shares(running, limit, share_within, weight)
        for row in running:
            if len(claimed) >= limit:
                break
            pick = (select(R.id).where(R.batch_id == row.id, claimable(now))
                    .order_by(R.id).limit(min(limit - len(claimed), quota.get(row.id, limit)))
                    .with_for_update(skip_locked=True))
            claimed += sorted((await session.execute(
                update(R).where(R.id.in_(pick))
                .values(state="running", lease_owner=owner,
                        lease_until=now + timedelta(seconds=lease_s), attempts=R.attempts + 1)
                .returning(R.id, R.batch_id, R.line, R.custom_id, R.byte_offset,
                           R.byte_length, R.attempts))).all(), key=lambda c: c.id)
        if not claimed:
            return []
        ids = {c.batch_id for c in claimed}
        batches = {row.id: row for row in (await session.execute(
            select(Batch.id, Batch.endpoint, Batch.key_id, Batch.input_file_id,
                   Batch.expires_at, Batch.team_id).where(Batch.id.in_(ids)))).all()}
        # Lines not yet recorded, counted from the lines: the batch row's completed/failed
        # are only written when it ends, so total minus them would be the whole batch.
        left = dict((await session.execute(
            select(R.batch_id, func.count()).where(R.batch_id.in_(ids), R.state.in_(OPEN_LINES))
            .group_by(R.batch_id))).all())
    return [ClaimedLine(c.id, c.batch_id, c.line, c.custom_id, c.byte_offset, c.byte_length,
                        c.attempts, b.endpoint, b.key_id, b.input_file_id, b.expires_at, b.team_id,
                        int(left.get(c.batch_id, 1)))
            for c in claimed for b in (batches[c.batch_id],)]


def _shares(running: Sequence[Any], limit: int, within: timedelta | None,
            weight: Callable[[str | None], float] | None) -> dict[str, int]:
    """Per batch id, the most lines it gives this claim (absent: no cap)."""
    if within is None or len(running) < 2:
        return {}
    first = running[0].expires_at
    peers = [r for r in running if r.expires_at - first <= within]
    weights = [max(1e-9, weight(r.team_id)) if weight is not None else 1.0 for r in peers]
    total = sum(weights)
    return {r.id: max(1, math.ceil(limit * w / total)) for r, w in zip(peers, weights, strict=True)}


def _held(line_id: int, owner: str) -> Any:
    return and_(R.id == line_id, R.state == "running", R.lease_owner == owner)


async def record_line(session: AsyncSession, line_id: int, owner: str, *, ok: bool,
                      status_code: int | None, result: str,
                      usage: UsageRecord | None = None) -> bool:
    """Record a line's outcome if ``owner`` still holds it; False: someone else has it now.

    ``usage``, the run's usage record, is stored with it, in the caller's transaction, and
    only when the line was still held: the run that records the line is the one billed.
    """
    stmt = (update(R).where(_held(line_id, owner))
            .values(state="completed" if ok else "failed", status_code=status_code,
                    result=result, lease_owner=None, lease_until=None))
    with translating(f"recording batch line {line_id}"):
        kept = bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]
    if kept and usage is not None:
        await insert_usage(session, [usage])
    return kept


async def retry_line(session: AsyncSession, line_id: int, owner: str, not_before: datetime) -> bool:
    """Put a held line back to wait until ``not_before`` (refused for now: limits, overload)."""
    stmt = (update(R).where(_held(line_id, owner))
            .values(state="pending", not_before=not_before, lease_owner=None, lease_until=None))
    with translating(f"putting batch line {line_id} back"):
        return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]


async def renew_leases(session: AsyncSession, owner: str, now: datetime, lease_s: float) -> int:
    """Extend every lease ``owner`` holds (its heartbeat): an expired lease then means a dead
    executor, not a slow line. Returns how many lines it holds."""
    stmt = (update(R).where(R.lease_owner == owner, R.state == "running")
            .values(lease_until=now + timedelta(seconds=lease_s)))
    with translating("renewing batch leases"):
        return int((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]
