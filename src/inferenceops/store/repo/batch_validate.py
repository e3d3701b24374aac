"""The ``validating`` phase of a batch in the store: which batches wait for their check, who
checks one, and its result written at once with its lines.

A batch created from a large input file is stored ``validating`` with no lines
(``batch.batch_service``); an executor checks it later (``batch.validation``). One executor
at a time: ``take_for_validation`` is a conditional UPDATE that gives the caller the batch's
lease (the same ``lease_owner``/``lease_until`` that guard finalisation), so an executor
that dies mid-check leaves the batch to the next one once the lease ends. The result is
written by ``settle_validation`` in the caller's transaction — the batch's new state
(``in_progress`` with its total, or ``failed`` with ``errors``) and, when it passed, one
pending row per line — only while the batch is still ``validating`` and still held: a
batch cancelled meanwhile keeps its cancel (``release`` then hands it to finalisation)::

    validating ──check passes──▶ in_progress        validating ──a line does not fit──▶ failed
    validating ──cancel──▶ cancelling ─▶ cancelled  validating ──past expires_at──▶ expired
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import translating
from inferenceops.store.records import BatchLine, ToValidate
from inferenceops.store.repo.batches import add_lines
from inferenceops.store.tables_batch import Batch


def _free(now: datetime) -> Any:
    return or_(Batch.lease_until.is_(None), Batch.lease_until < now)


async def validating_batches(session: AsyncSession, now: datetime, *,
                             limit: int) -> list[ToValidate]:
    """Up to ``limit`` batches waiting for their check that nobody holds, oldest first
    (a batch past its deadline is left to expire: ``batch_finish.due_batches``)."""
    stmt = (select(Batch.id, Batch.key_id, Batch.endpoint, Batch.input_file_id)
            .where(Batch.status == "validating", Batch.expires_at > now, _free(now))
            .order_by(Batch.id).limit(limit))
    with translating("finding batches to validate"):
        return [ToValidate(r.id, r.key_id, r.endpoint, r.input_file_id)
                for r in (await session.execute(stmt)).all()]


async def take_for_validation(session: AsyncSession, batch_id: str, owner: str, now: datetime,
                              lease_s: float) -> bool:
    """Hold ``batch_id`` for its check if it is still ``validating`` and nobody holds it."""
    stmt = (update(Batch).where(Batch.id == batch_id, Batch.status == "validating", _free(now))
            .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s)))
    with translating(f"taking batch {batch_id!r} to validate"):
        return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]


async def settle_validation(session: AsyncSession, batch_id: str, owner: str, now: datetime, *,
                            lines: Sequence[BatchLine],
                            errors: Sequence[dict[str, Any]]) -> bool:
    """The check's result, if ``owner`` still holds the batch and it is still ``validating``:
    ``failed`` with ``errors`` when there are any, else ``in_progress`` with one pending row
    per line. False: it was cancelled or taken over meanwhile (nothing written)."""
    values: dict[str, Any] = (
        {"status": "failed", "failed_at": now, "errors": list(errors), "total": 0}
        if errors else {"status": "in_progress", "in_progress_at": now, "total": len(lines)})
    stmt = (update(Batch).where(Batch.id == batch_id, Batch.status == "validating",
                                Batch.lease_owner == owner)
            .values(lease_owner=None, lease_until=None, **values))
    with translating(f"settling the check of batch {batch_id!r}"):
        if not (await session.execute(stmt)).rowcount:  # type: ignore[attr-defined]
            return False
    if not errors:
        await add_lines(session, batch_id, lines)
    return True


async def release(session: AsyncSession, batch_id: str, owner: str) -> None:
    """Let go of ``batch_id`` if ``owner`` holds it (its check was void: it was cancelled)."""
    stmt = (update(Batch).where(Batch.id == batch_id, Batch.lease_owner == owner)
            .values(lease_owner=None, lease_until=None))
    with translating(f"releasing batch {batch_id!r}"):
        await session.execute(stmt)
