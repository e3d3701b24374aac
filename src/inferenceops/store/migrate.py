"""Bring a database's schema to this code's head revision, safely when replicas start together.

Owns: the programmatic Alembic configuration (``script_location`` is the
``store/migrations`` package folder; no alembic.ini), and the cross-process
migration lock.

Locking — several ``serve``/``worker`` processes may call ``upgrade`` at once:

* PostgreSQL: a session-level ``pg_advisory_lock(MIGRATION_LOCK_KEY)`` taken
  on a dedicated AUTOCOMMIT connection and held until the migration
  transaction has committed (released explicitly, or by PostgreSQL if the
  process dies). The migration itself runs in one transaction on a second
  connection (PostgreSQL DDL is transactional).
* SQLite: an exclusive ``fcntl.flock`` on ``<db file>.migrate.lock`` beside the
  database (the file stays; deleting it would let a late process lock a
  fresh inode), plus SQLite's own locking: the migration runs inside one
  ``BEGIN IMMEDIATE`` transaction, so even without the flock two migrators
  cannot interleave.

Alembic re-reads ``alembic_version`` after the lock is held, so the second
process finds the head and does nothing: upgrading an up-to-date database is
a no-op. Lock waits are bounded (``lock_timeout_s``) and end in
``StoreUnavailable`` naming the lock. No queries other than Alembic's here.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from inferenceops.store.db import backend_of, create_engine, parse_url, sqlite_path
from inferenceops.store.errors import TRANSLATED, StoreError, StoreUnavailable, translate

try:  # Unix; elsewhere SQLite's own BEGIN IMMEDIATE locking is the only guard.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Fixed advisory-lock key ("infops" + 0x0001); every InferenceOps version uses the same one.
MIGRATION_LOCK_KEY = 0x696E_666F_7073_0001
DEFAULT_LOCK_TIMEOUT_S = 300.0
_POLL_S = 0.05


def alembic_config() -> Config:
    """Alembic configuration pointing at the packaged migrations (no ini file)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def head() -> str:
    """The newest revision this code knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:  # pragma: no cover - packaging error
        raise StoreError(f"no migrations found in {MIGRATIONS_DIR}")
    return revision


async def upgrade(url: str, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> str:
    """Migrate the database at ``url`` to the head revision (under the lock); returns the head."""
    parsed = parse_url(url)
    async with migration_lock(parsed, timeout_s=lock_timeout_s):
        engine = create_engine(parsed, pool_size=1)
        try:
            async with engine.connect() as connection:
                connection = await connection.execution_options(inferenceops_write=True)
                async with connection.begin():
                    await connection.run_sync(_upgrade_sync)
        except TRANSLATED as error:
            raise translate(error, f"migrating {_safe(parsed)}") from error
        finally:
            await engine.dispose()
    return head()


async def current(url: str) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    parsed = parse_url(url)
    engine = create_engine(parsed, pool_size=1)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision())
    except TRANSLATED as error:
        raise translate(error, f"reading the schema revision of {_safe(parsed)}") from error
    finally:
        await engine.dispose()


def _upgrade_sync(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


@asynccontextmanager
async def migration_lock(url: str | URL, *, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> AsyncIterator[None]:
    """Hold the cross-process migration lock of this database (see the module doc)."""
    parsed = parse_url(url)
    if backend_of(parsed) == "postgresql":
        async with _pg_lock(parsed, timeout_s):
            yield
    else:
        path = sqlite_path(parsed)
        if path is None or fcntl is None:  # in-memory: one process by definition
            yield
            return
        async with _file_lock(path.with_name(path.name + ".migrate.lock"), timeout_s):
            yield


@asynccontextmanager
async def _pg_lock(url: URL, timeout_s: float) -> AsyncIterator[None]:
    engine: AsyncEngine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.exec_driver_sql(f"SET lock_timeout = {max(1, int(timeout_s * 1000))}")
            try:
                await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            except TRANSLATED as error:
                if "lock timeout" in str(error) or "55P03" in repr(getattr(error, "orig", "")):
                    raise _lock_busy(_safe(url), timeout_s) from error
                raise
            try:
                yield
            finally:
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                         {"key": MIGRATION_LOCK_KEY})
    except TRANSLATED as error:
        raise translate(error, f"locking {_safe(url)} for migration") from error
    finally:
        await engine.dispose()


@asynccontextmanager
async def _file_lock(path: Path, timeout_s: float) -> AsyncIterator[None]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise translate(error, f"opening the migration lock file {str(path)!r}") from error
    try:
        # Poll with LOCK_NB rather than block a thread: the wait stays cancellable and bounded.
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _lock_busy(str(path), timeout_s) from None
                await asyncio.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock_busy(where: str, timeout_s: float) -> StoreUnavailable:
    return StoreUnavailable(
        f"another process has held the migration lock of {where} for over {timeout_s:g} s; "
        "wait for it to finish, or find and stop the stuck migrator")


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)
