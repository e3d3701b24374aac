"""Files API rows: add, find, list and delete a file, always as seen by one owner.

Every read and delete takes a ``FileOwner`` and filters by it in the query itself: a
file of another team is simply not found (the API answers 404, never 403, so ids of
other teams' files reveal nothing). The file's bytes are on disk (``batch.files``);
this module keeps only the rows. Files do not affect the data-plane snapshot, so
nothing here bumps the revision.

Listing pages on the id alone (ids sort by creation time, ``ids.new_sortable_id``):
``after`` need not name a file that still exists. A file past its ``expires_at`` is not
found by the owner's reads (given ``now``); the expiry sweep (``batch.file_expiry``)
deletes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import translating
from inferenceops.store.records import FileOwner, FileRecord
from inferenceops.store.repo._common import check_choice
from inferenceops.store.tables_batch import UNFINISHED_BATCH, Batch
from inferenceops.store.tables_files import FILE_PURPOSES, FILE_STATES, File

Order = Literal["asc", "desc"]
MAX_LIST = 10_000  # OpenAI's own largest page for GET /v1/files


def file_record(row: File) -> FileRecord:
    return FileRecord(row.id, row.team_id, row.principal_id, row.key_id, row.purpose, row.filename,
                      row.size_bytes, row.line_count, row.status, row.path, row.created_at,
                      row.expires_at)


def _owned(stmt: Any, owner: FileOwner) -> Any:
    """``stmt`` narrowed to what ``owner`` may see (a select or a delete)."""
    if owner.team_id is not None:
        return stmt.where(File.team_id == owner.team_id)
    return stmt.where(File.team_id.is_(None), File.principal_id == owner.principal_id)


async def add_file(session: AsyncSession, record: FileRecord) -> FileRecord:
    """Insert the row for a file already on disk (``record.path``); returns it as stored."""
    check_choice("a file purpose", record.purpose, FILE_PURPOSES, field="purpose")
    check_choice("a file status", record.status, FILE_STATES, field="status")
    row = File(id=record.id, team_id=record.team_id, principal_id=record.principal_id,
               key_id=record.key_id, purpose=record.purpose, filename=record.filename,
               size_bytes=record.bytes, line_count=record.line_count, status=record.status,
               path=record.path, created_at=record.created_at, expires_at=record.expires_at)
    with translating(f"adding file {record.id!r}"):
        session.add(row)
        await session.flush()
    return file_record(row)


def _live(stmt: Any, now: datetime | None) -> Any:
    """``stmt`` without the files that expired by ``now`` (None: expired files too)."""
    if now is None:
        return stmt
    return stmt.where(or_(File.expires_at.is_(None), File.expires_at > now))


async def get_file(session: AsyncSession, file_id: str, owner: FileOwner, *,
                   now: datetime | None = None) -> FileRecord | None:
    """The file ``file_id`` if ``owner`` may see it, else None (absent and foreign alike; with
    ``now``, expired too)."""
    stmt = _live(_owned(select(File).where(File.id == file_id), owner), now)
    with translating(f"reading file {file_id!r}"):
        row = (await session.execute(stmt)).scalar_one_or_none()
    return None if row is None else file_record(row)


async def list_files(session: AsyncSession, owner: FileOwner, *, purpose: str | None = None,
                     after: str | None = None, limit: int = MAX_LIST,
                     order: Order = "desc", now: datetime | None = None
                     ) -> tuple[tuple[FileRecord, ...], bool]:
    """``owner``'s files by creation time (``order``), those past ``after``, at most ``limit``
    (with ``now``: not those expired by then).

    Returns the page and whether more follow it.
    """
    stmt = _live(_owned(select(File), owner), now)
    if purpose is not None:
        stmt = stmt.where(File.purpose == purpose)
    if after is not None:
        stmt = stmt.where(File.id < after if order == "desc" else File.id > after)
    stmt = stmt.order_by(File.id.desc() if order == "desc" else File.id.asc()).limit(limit + 1)
    with translating("listing files"):
        rows = (await session.execute(stmt)).scalars().all()
    return tuple(file_record(row) for row in rows[:limit]), len(rows) > limit


async def delete_file(session: AsyncSession, file_id: str, owner: FileOwner) -> FileRecord | None:
    """Delete the row of ``file_id`` if ``owner`` may see it; returns what it was (None: nothing)."""
    found = await get_file(session, file_id, owner)
    if found is None:
        return None
    with translating(f"deleting file {file_id!r}"):
        await session.execute(_owned(delete(File).where(File.id == file_id), owner))
    return found


async def expired_files(session: AsyncSession, now: datetime, *, limit: int) -> list[FileRecord]:
    """Up to ``limit`` files (anyone's) that expired by ``now`` and that no unfinished batch
    reads (its lines are read from the file as they run), oldest expiry first."""
    in_use = select(Batch.id).where(Batch.input_file_id == File.id,
                                    Batch.status.in_(UNFINISHED_BATCH)).exists()
    stmt = (select(File).where(File.expires_at.is_not(None), File.expires_at <= now, ~in_use)
            .order_by(File.expires_at).limit(limit))
    with translating("listing expired files"):
        return [file_record(row) for row in (await session.execute(stmt)).scalars()]


async def remove_file_row(session: AsyncSession, file_id: str) -> None:
    """Delete one file's row, whoever owns it (the expiry sweep)."""
    with translating(f"deleting file {file_id!r}"):
        await session.execute(delete(File).where(File.id == file_id))
