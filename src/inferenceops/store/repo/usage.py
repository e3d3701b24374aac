"""The usage ledger: bulk inserts from the outbox writer, and reads for tests and reports.

Rows are plain ``outbox.UsageRecord`` fields; inserts are one multi-row
statement per batch (no ORM objects), never bumping the revision: usage is not
part of the snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.outbox.records import UsageRecord
from inferenceops.store.errors import translating
from inferenceops.store.tables import UsageRow

_CHUNK = 500  # rows per INSERT: well under SQLite's and PostgreSQL's bound-parameter limits


def _row(record: UsageRecord) -> dict[str, Any]:
    row = asdict(record)
    row["at"] = datetime.fromtimestamp(record.at, UTC)
    return row


async def insert_usage(session: AsyncSession, records: Sequence[UsageRecord]) -> int:
    """Store ``records`` in the caller's transaction; returns how many."""
    with translating("recording usage"):
        for start in range(0, len(records), _CHUNK):
            await session.execute(insert(UsageRow), [_row(r) for r in records[start:start + _CHUNK]])
    return len(records)


async def count_usage(session: AsyncSession, *, key_id: str | None = None) -> int:
    stmt = select(func.count()).select_from(UsageRow)
    if key_id is not None:
        stmt = stmt.where(UsageRow.key_id == key_id)
    return int((await session.execute(stmt)).scalar_one())


async def list_usage(session: AsyncSession, *, key_id: str | None = None,
                     limit: int = 1000) -> tuple[UsageRecord, ...]:
    """The most recent records (oldest first), for tests and the CLI."""
    stmt = select(UsageRow).order_by(UsageRow.id.desc()).limit(limit)
    if key_id is not None:
        stmt = stmt.where(UsageRow.key_id == key_id)
    rows = list((await session.execute(stmt)).scalars())
    return tuple(UsageRecord(
        r.request_id, r.at.timestamp(), r.key_id, r.team_id, r.principal_id, r.principal_kind,
        r.model, r.deployment, r.replica, r.endpoint, r.priority, r.stream, r.prompt_tokens,
        r.completion_tokens, r.tokens_reported, r.cost_nanos, r.status, r.error_code,
        r.latency_ms, r.first_byte_ms, r.cached_tokens, r.adapter) for r in reversed(rows))
