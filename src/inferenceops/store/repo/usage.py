"""The usage ledger: bulk inserts from the outbox writer, and reads for tests and reports.

Rows are plain ``outbox.UsageRecord`` fields; a batch is one ``executemany`` of positional
tuples on the session's connection (the driver's own bulk path: sqlite3's executemany,
asyncpg's pipelined prepared statement), every column in every row, never bumping the
revision: usage is not part of the snapshot. Not the ORM's bulk insert: it leaves out the
None values of each row, so rows that differ in which fields are None (errors, streams,
NULL teams) split a batch into hundreds of statements (``bench/usage_ledger.py`` on a busy
2-core machine: 2,100 records/s on SQLite and 3,200 on PostgreSQL that way, 12,600 and
14,300 with a Core executemany of dicts).

Nor Core's executemany: it turns each row into a dict and runs every value through its
column type, which cost the writer ~5 µs of CPU per record more than the driver itself.
Here the statement is the one SQLAlchemy compiles for the dialect (the same SQL, bind
casts and parameter order), built once per dialect and run with ``exec_driver_sql``
(inside the session's transaction), and each row is a tuple of the values the column
types would have produced — only ``at`` needs converting: on PostgreSQL an aware UTC
datetime, on SQLite the text SQLAlchemy's SQLite ``DateTime`` stores (naive UTC,
``YYYY-MM-DD HH:MM:SS.ffffff``), so every read — ORM, Core, the rollups' SQL on ``at`` —
sees exactly what it saw before. Booleans go as they are: sqlite3 stores ``True`` as the
integer 1, as SQLAlchemy's ``Boolean`` did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import Dialect, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.outbox.records import UsageRecord
from inferenceops.store.errors import translating
from inferenceops.store.tables_usage import UsageRow

_FIELDS = tuple(f.name for f in fields(UsageRecord))  # each one a column of usage_records
_INSERT = insert(cast(Table, UsageRow.__table__))
_fromtimestamp = datetime.fromtimestamp


def _sqlite_at(at: float) -> str:
    """What SQLAlchemy's SQLite ``DateTime`` stores for this instant: naive UTC text with
    microseconds (its ``%(year)04d-…%(microsecond)06d`` storage format)."""
    return _fromtimestamp(at, UTC).isoformat(" ", "microseconds").removesuffix("+00:00")


def _aware_at(at: float) -> datetime:
    return _fromtimestamp(at, UTC)


_AT_VALUE: dict[str, Callable[[float], Any]] = {"sqlite": _sqlite_at, "postgresql": _aware_at}
#: Per dialect name: (SQL, a record -> its row).
_STATEMENTS: dict[str, tuple[str, Callable[[UsageRecord], tuple[Any, ...]]]] = {}


def _statement(dialect: Dialect) -> tuple[str, Callable[[UsageRecord], tuple[Any, ...]]]:
    """The INSERT as SQLAlchemy compiles it for ``dialect``, and the row maker in its order."""
    found = _STATEMENTS.get(dialect.name)
    if found is None:
        compiled = _INSERT.compile(dialect=dialect, column_keys=list(_FIELDS))
        order = tuple(compiled.positiontup or ())
        if sorted(order) != sorted(_FIELDS):
            raise RuntimeError(f"the usage insert for {dialect.name} binds {order}, not {_FIELDS}")
        values, at, at_value = attrgetter(*order), order.index("at"), _AT_VALUE[dialect.name]

        def row(record: UsageRecord) -> tuple[Any, ...]:
            v = values(record)
            return v[:at] + (at_value(v[at]),) + v[at + 1:]

        found = _STATEMENTS[dialect.name] = (compiled.string, row)
    return found


async def insert_usage(session: AsyncSession, records: Sequence[UsageRecord]) -> int:
    """Store ``records`` in the caller's transaction (one executemany); returns how many."""
    if records:
        with translating("recording usage"):
            connection = await session.connection()
            sql, row = _statement(connection.dialect)
            await connection.exec_driver_sql(sql, [row(r) for r in records])
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
