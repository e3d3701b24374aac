"""Migrations: every table created, idempotent, no drift from tables.py, safe when run concurrently."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from tests.unit.store.conftest import FreshDatabases

from inferenceops.store import Database, InvalidDatabaseURL, StoreUnavailable, current, head, upgrade
from inferenceops.store.migrate import migration_lock
from inferenceops.store.tables import metadata

TABLES = {"teams", "users", "service_accounts", "memberships", "api_keys", "grants", "providers",
          "deployments", "models", "audit_log", "control_state", "alembic_version"}


async def _schema(url: str) -> tuple[set[str], list[str], list[tuple[str, int]]]:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            tables = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
            versions = [r[0] for r in await conn.execute(text("SELECT version_num FROM alembic_version"))]
            state = [(r[0], r[1]) for r in await conn.execute(text("SELECT key, value FROM control_state"))]
        return tables, versions, state
    finally:
        await db.close()


async def test_upgrade_creates_every_table_and_is_idempotent(fresh: FreshDatabases) -> None:
    url = await fresh.new()
    assert await current(url) is None
    assert await upgrade(url) == head() == "0001"
    assert await upgrade(url) == head()  # second run: a no-op
    assert await current(url) == head()
    tables, versions, state = await _schema(url)
    assert tables == TABLES
    assert versions == [head()]
    assert state == [("revision", 0)]


async def test_migrations_match_the_declared_tables(fresh: FreshDatabases) -> None:
    url = await fresh.new()
    await upgrade(url)
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), metadata))
    finally:
        await db.close()
    assert diff == []


async def test_lock_excludes_a_second_migrator(fresh: FreshDatabases) -> None:
    url = await fresh.new()
    async with migration_lock(url):
        with pytest.raises(StoreUnavailable, match="migration lock"):
            await upgrade(url, lock_timeout_s=0.3)
    assert await upgrade(url) == head()


_CHILD = """
import asyncio, sys
from inferenceops.store.migrate import upgrade
print("ready", flush=True)
sys.stdin.readline()
print(asyncio.run(upgrade(sys.argv[1])), flush=True)
"""


async def test_two_processes_migrating_at_once(fresh: FreshDatabases) -> None:
    """Two replicas start together against a fresh database: both succeed, migrated once."""
    for _ in range(3):
        url = await fresh.new()
        children = [subprocess.Popen([sys.executable, "-c", _CHILD, url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for _ in range(2)]
        try:
            for child in children:  # both have paid their import cost: start them together
                assert await asyncio.to_thread(child.stdout.readline) == "ready\n"  # type: ignore[union-attr]
            for child in children:
                child.stdin.write("go\n")  # type: ignore[union-attr]
                child.stdin.flush()  # type: ignore[union-attr]
            results = [await asyncio.to_thread(child.communicate, timeout=60) for child in children]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        for child, (out, err) in zip(children, results, strict=True):
            assert child.returncode == 0, err
            assert out.strip() == head()
        tables, versions, state = await _schema(url)
        assert tables == TABLES
        assert versions == [head()]
        assert state == [("revision", 0)]


@pytest.mark.parametrize("url", ["not a url", "mysql+aiomysql://u@h/db", "sqlite+nosuchdriver:///x.db", "sqlite+pysqlite:///x.db"])
async def test_malformed_url_is_a_clear_error(url: str) -> None:
    with pytest.raises(InvalidDatabaseURL, match="sqlite\\+aiosqlite:///"):
        await upgrade(url)


async def test_unreachable_postgres_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="check"):
        await upgrade("postgresql+asyncpg://nobody@127.0.0.1:1/none")


async def test_unwritable_sqlite_folder_is_store_unavailable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreUnavailable, match="writable"):
        await upgrade(f"sqlite+aiosqlite:///{blocker}/sub/store.db")
