"""Finalising batches: which ones are due, who writes their files, and their final state.

A batch is finalised by one executor at a time: ``take_batch`` is a conditional UPDATE that
succeeds for one caller and gives it a lease on the batch; a caller that dies while writing
the files loses the lease and another takes over (the file names are fixed per batch, so
writing again replaces, never adds). Batch states (``tables_batch.BATCH_STATES``)::

    validating ─▶ in_progress | failed                 (its check: ``batch_validate``)
    validating ─▶ expired                              (past its window, never checked)
    in_progress ─▶ finalizing ─▶ completed              (every line recorded)
    in_progress ─▶ expired                              (past its window: open lines expire)
    in_progress ─▶ cancelling ─▶ cancelled              (POST …/cancel; running lines end first)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import translating
from inferenceops.store.records import LineOutcome
from inferenceops.store.repo.batches import OPEN_LINES, R
from inferenceops.store.tables_batch import Batch

Target = Literal["completed", "expired", "cancelled"]


async def due_batches(session: AsyncSession, now: datetime) -> list[tuple[str, str, Target]]:
    """Batches to finalise now, as (id, status, what they become); none another executor holds."""
    free = or_(Batch.lease_until.is_(None), Batch.lease_until < now)
    with translating("finding batches to finalise"):
        rows = (await session.execute(select(Batch.id, Batch.status, Batch.expires_at).where(
            Batch.status.in_(("validating", "in_progress", "finalizing", "cancelling")),
            free))).all()
        ids = [r.id for r in rows]
        open_lines: dict[str, int] = {}
        live: dict[str, int] = {}
        if ids:
            open_lines = dict((await session.execute(
                select(R.batch_id, func.count()).where(R.batch_id.in_(ids),
                                                       R.state.in_(OPEN_LINES))
                .group_by(R.batch_id))).all())
            live = dict((await session.execute(
                select(R.batch_id, func.count()).where(R.batch_id.in_(ids), R.state == "running",
                                                       R.lease_until >= now)
                .group_by(R.batch_id))).all())
    due: list[tuple[str, str, Target]] = []
    for row in rows:
        if row.status == "finalizing":
            due.append((row.id, row.status, "completed"))
        elif row.status == "cancelling" and not live.get(row.id):
            due.append((row.id, row.status, "cancelled"))
        elif row.status in ("validating", "in_progress") and row.expires_at <= now:
            due.append((row.id, row.status, "expired"))
        elif row.status == "in_progress" and not open_lines.get(row.id):
            due.append((row.id, row.status, "completed"))
    return due


async def take_batch(session: AsyncSession, batch_id: str, owner: str, now: datetime,
                     lease_s: float, status: str, target: Target) -> bool:
    """Hold ``batch_id`` for finalising if it is still ``status`` and nobody holds it."""
    values: dict[str, object] = {"lease_owner": owner,
                                 "lease_until": now + timedelta(seconds=lease_s)}
    if target == "completed" and status == "in_progress":
        values.update(status="finalizing", finalizing_at=now)
    stmt = update(Batch).where(Batch.id == batch_id, Batch.status == status,
                               or_(Batch.lease_until.is_(None), Batch.lease_until < now)
                               ).values(**values)
    with translating(f"taking batch {batch_id!r} to finalise"):
        return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]


async def close_open_lines(session: AsyncSession, batch_id: str, state: str) -> int:
    """Every line not yet recorded becomes ``state`` (expired, cancelled); how many."""
    stmt = (update(R).where(R.batch_id == batch_id, R.state.in_(OPEN_LINES))
            .values(state=state, lease_owner=None, lease_until=None))
    with translating(f"closing the lines of batch {batch_id!r}"):
        return int((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]


async def outcomes(session: AsyncSession, batch_id: str, *, after_line: int,
                   limit: int) -> list[LineOutcome]:
    """Recorded or expired lines past ``after_line``, in line order (a page of the files)."""
    stmt = (select(R.id, R.line, R.custom_id, R.state, R.result)
            .where(R.batch_id == batch_id, R.line > after_line,
                   R.state.in_(("completed", "failed", "expired")))
            .order_by(R.line).limit(limit))
    with translating(f"reading the outcomes of batch {batch_id!r}"):
        return [LineOutcome(r.id, r.line, r.custom_id, r.state, r.result)
                for r in (await session.execute(stmt)).all()]


async def finish_batch(session: AsyncSession, batch_id: str, owner: str, now: datetime, *,
                       status: Target, output_file_id: str | None, error_file_id: str | None,
                       completed: int, failed: int) -> bool:
    """The batch's final state, if ``owner`` still holds it."""
    stmt = (update(Batch).where(Batch.id == batch_id, Batch.lease_owner == owner)
            .values(status=status, output_file_id=output_file_id, error_file_id=error_file_id,
                    completed=completed, failed=failed, lease_owner=None, lease_until=None,
                    **{f"{status}_at": now}))
    with translating(f"finishing batch {batch_id!r}"):
        return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]
