"""``insert_usage`` (the driver's executemany of positional tuples) stores exactly what
SQLAlchemy Core's executemany of dicts stored, on SQLite and PostgreSQL.

``core_insert`` is the path before it (each row a dict, every value through its column
type). The same records written both ways must be the same rows to the byte — every
column's stored text, and on SQLite its storage class (``at`` as SQLAlchemy's
``YYYY-MM-DD HH:MM:SS.ffffff`` text, booleans as integers) — read back the same through
the ORM, and roll up to the same hourly and daily sums. Records cover NULL in every
nullable column, both booleans, instants on a whole second, a microsecond that rounds up
into the next second, before the epoch and far ahead, non-ASCII text and huge integers.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, text, update

from inferenceops.outbox.records import UsageRecord
from inferenceops.store import Database
from inferenceops.store.repo.usage import insert_usage, list_usage
from inferenceops.store.repo.usage_rollups import roll_up
from inferenceops.store.tables_usage import UsageRollup, UsageRollupState, UsageRow

COLUMNS = ("request_id", "at", "key_id", "team_id", "principal_id", "principal_kind", "model",
           "deployment", "replica", "endpoint", "priority", "stream", "prompt_tokens",
           "completion_tokens", "tokens_reported", "cost_nanos", "status", "error_code",
           "latency_ms", "first_byte_ms", "cached_tokens", "adapter", "guardrails")
NOW = datetime(2026, 12, 4, 12, 30, tzinfo=UTC)
INSTANTS = (NOW.timestamp() - 5000.0,  # a whole second
            NOW.timestamp() - 4000.123456, NOW.timestamp() - 3000.0000004,  # rounds up a second
            NOW.timestamp() - 86400 * 3 + 0.5, NOW.timestamp() - 1.000001, -1234.5678,
            4102444800.25)  # 2100-01-01


def records() -> list[UsageRecord]:
    out = []
    for n, at in zip(range(42), itertools.cycle(INSTANTS), strict=False):
        out.append(UsageRecord(
            f"req-{n}", at, f"k{n % 3}", None if n % 4 == 0 else f"t{n % 2}",
            "usr_é" if n % 5 == 0 else "usr_1", "service_account" if n % 2 else "user",
            None if n % 7 == 0 else "llama-3.1-8b", None if n % 6 == 0 else "d1",
            None if n % 3 == 0 else f"d1-{n % 2}", "chat/completions", "interactive",
            n % 2 == 0, n * 101, 2**40 + n if n == 9 else n * 3, n % 3 != 0,
            2**62 - n if n == 11 else n * 1000 + 7, 200 if n % 8 else 429,
            None if n % 8 else "rate_limited", 0.1 * n if n % 4 else 25_000.125,
            None if n % 2 else 15.5 + n, n // 2, None if n % 5 else "lora-ü",
            None if n % 3 else f"pii@{n} card:block email:redact×{n}"))
    return out


async def core_insert(db: Database, batch: list[UsageRecord]) -> None:
    """The Core executemany insert_usage replaced: a dict per row, through the column types."""
    async with db.transaction() as tx:
        connection = await tx.connection()
        await connection.execute(insert(cast(Table, UsageRow.__table__)), [
            {**{c: getattr(r, c) for c in COLUMNS}, "at": datetime.fromtimestamp(r.at, UTC)}
            for r in batch])


async def new_insert(db: Database, batch: list[UsageRecord]) -> None:
    async with db.transaction() as tx:
        assert await insert_usage(tx, batch) == len(batch)


async def stored(db: Database) -> list[tuple[Any, ...]]:
    """Every row as stored: each column's text (and its SQLite storage class), in insert order."""
    if db.backend == "sqlite":
        shown = ", ".join(f"CAST({c} AS TEXT), typeof({c})" for c in COLUMNS)
    else:
        shown = ", ".join(f"CAST({c} AS TEXT)" for c in COLUMNS)
    async with db.read() as tx:
        return [tuple(row) for row in await tx.execute(text(
            f"SELECT {shown} FROM usage_records ORDER BY id"))]


async def rollups(db: Database) -> list[tuple[Any, ...]]:
    while True:
        async with db.transaction() as tx:
            if (await roll_up(tx, NOW + timedelta(hours=2), step_hours=48)).caught_up:
                break
    u = UsageRollup
    async with db.read() as tx:
        rows = await tx.execute(select(*(c for c in u.__table__.columns if c.name != "id")))
        return sorted((tuple(row) for row in rows), key=repr)


async def reset(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute(delete(UsageRow))
        await tx.execute(delete(UsageRollup))
        await tx.execute(update(UsageRollupState).values(closed_until=None, last_id=0,
                                                         refreshed_at=None, raw_since=None))


async def test_rows_are_stored_and_read_as_with_core(db: Database) -> None:
    batch = records()
    await core_insert(db, batch)
    before = await stored(db)
    async with db.read() as tx:
        read_before = await list_usage(tx)
    await reset(db)

    await new_insert(db, batch[:1])  # a batch of one, then the rest
    await new_insert(db, batch[1:])
    assert await stored(db) == before
    async with db.read() as tx:
        assert await list_usage(tx) == read_before

    if db.backend == "sqlite":  # the text SQLAlchemy's SQLite DateTime stores
        assert before[0][2:4] == ("2026-12-04 11:06:40.000000", "text")
        assert before[2][2] == "2026-12-04 11:40:00.000000"  # 11:39:59.9999996 rounds to the next second
        assert before[0][22:24] == ("1", "integer")  # stream
    assert [r.request_id for r in read_before] == [r.request_id for r in batch]
    async with db.read() as tx:
        assert (await tx.execute(select(UsageRow.at).where(UsageRow.request_id == "req-0"))
                ).scalar_one() == datetime.fromtimestamp(INSTANTS[0], UTC)


async def test_rows_roll_up_as_with_core(db: Database) -> None:
    batch = [r for r in records() if NOW.timestamp() - 4 * 86400 < r.at < NOW.timestamp()]
    await core_insert(db, batch)
    rolled_before = await rollups(db)
    await reset(db)
    await new_insert(db, batch)
    assert await rollups(db) == rolled_before
    assert len(rolled_before) > 10


async def test_nothing_to_insert_is_nothing_done(db: Database) -> None:
    async with db.transaction() as tx:
        assert await insert_usage(tx, []) == 0
    assert await stored(db) == []
