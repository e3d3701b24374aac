"""Database handle: backend detection, SQLite connection set-up, UTC timestamps, error mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from inferenceops.store import Database, InvalidDatabaseURL, SchemaOutdated, backend_of, repo
from inferenceops.store.ids import new_id


def test_backend_of() -> None:
    assert backend_of("sqlite+aiosqlite:///x.db") == "sqlite"
    assert backend_of("postgresql+asyncpg://u@h/db") == "postgresql"
    with pytest.raises(InvalidDatabaseURL):
        backend_of("mysql://u@h/db")


def test_ids_have_a_readable_prefix() -> None:
    ids = {new_id("team") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("team_") and len(i) == 25 and i[5:].isalnum() for i in ids)


async def test_sqlite_connection_settings(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/new/folder/store.db")
    try:
        assert db.backend == "sqlite"
        async with db.read() as session:
            values = [(await session.execute(text(f"PRAGMA {p}"))).scalar_one()
                      for p in ("journal_mode", "foreign_keys", "busy_timeout")]
        assert values == ["wal", 1, 10_000]
        assert (tmp_path / "new" / "folder").is_dir()
    finally:
        await db.close()


async def test_timestamps_are_utc_aware(db: Database) -> None:
    plus_two = timezone(timedelta(hours=2))
    created = datetime(2026, 1, 1, 14, 0, tzinfo=plus_two)
    async with db.transaction() as tx:
        user = await repo.create_user(tx, "u@x.io")
        key = await repo.create_api_key(tx, name="k", prefix="sk-io-k", digest=b"\x01" * 32,
                                        user_id=user.id, now=created, expires_at=created)
    async with db.read() as session:
        stored = await repo.get_api_key(session, key.id)
    assert stored.created_at == created and stored.created_at.tzinfo is UTC
    assert stored.created_at.hour == 12
    with pytest.raises(ValueError, match="naive"):
        async with db.transaction() as tx:
            await repo.create_api_key(tx, name="n", prefix="sk-io-n", digest=b"\x02" * 32,
                                      user_id=user.id, expires_at=datetime(2026, 1, 1))


async def test_unmigrated_database_says_to_migrate(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    try:
        with pytest.raises(SchemaOutdated, match="migrate"):
            async with db.read() as session:
                await repo.list_teams(session)
    finally:
        await db.close()


def test_cheap_binds_store_none_and_booleans_exactly_as_sqlite3_does_without_them() -> None:
    import sqlite3

    from inferenceops.store.db import register_cheap_sqlite_binds

    values = (None, True, False, 0, 1, "x", 2.5)

    def stored() -> list[tuple[object, ...]]:
        with sqlite3.connect(":memory:") as conn:
            return [conn.execute("SELECT typeof(?), ?", (v, v)).fetchone() for v in values]

    mine = {k: sqlite3.adapters.pop(k) for k in list(sqlite3.adapters)
            if k[0] in (type(None), bool)}
    try:
        plain = stored()
        register_cheap_sqlite_binds()
        assert {k[0] for k in sqlite3.adapters} >= {type(None), bool}
        assert stored() == plain
        assert plain[:3] == [("null", None), ("integer", 1), ("integer", 0)]
    finally:
        sqlite3.adapters.update(mine)
