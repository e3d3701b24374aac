"""The database handle: one async engine and session factory per process, from a URL.

Owns engine construction and per-backend connection set-up:

* SQLite (embedded default): WAL journal, ``foreign_keys=ON``, ``busy_timeout``
  and ``synchronous=NORMAL`` on every new connection; the parent folder is
  created. sqlite3's legacy transaction control is switched off and we emit
  ``BEGIN`` ourselves, so a read transaction is a real snapshot and DDL is
  transactional; write transactions use ``BEGIN IMMEDIATE`` so two writers
  queue on ``busy_timeout`` instead of failing on a lock upgrade.
* PostgreSQL (asyncpg): a bounded pool with pre-ping; snapshot reads use
  REPEATABLE READ so everything read in one ``read()`` block is one snapshot.

Sessions are handed out only through ``transaction()`` (commit on success,
rollback on error) and ``read()`` (always rolled back), both of which turn
library exceptions into ``StoreError``s. No table knowledge and no queries here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from inferenceops.store.errors import (
    EXAMPLE_URLS,
    TRANSLATED,
    InvalidDatabaseURL,
    translate,
    translating,
)

Backend = Literal["sqlite", "postgresql"]

#: Execution option telling the SQLite ``begin`` hook to take the write lock up front.
_WRITE = "inferenceops_write"
#: ``session.info`` flag: this transaction moved the snapshot revision (set by the repositories).
REVISION_BUMPED = "inferenceops.revision_bumped"
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Accepted driver names and the async driver each means.
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "sqlite+aiosqlite": "sqlite+aiosqlite",
            "postgresql": "postgresql+asyncpg", "postgresql+asyncpg": "postgresql+asyncpg"}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _loads(value: str | bytes | int | float) -> Any:
    # SQLite gives a JSON column NUMERIC affinity: a bare JSON number ("3") comes back as a number.
    if isinstance(value, int | float):
        return value
    return orjson.loads(value)


#: orjson for JSON columns: several times faster than ``json`` when loading 100k keys.
_JSON: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": _loads}


def parse_url(url: str | URL) -> URL:
    """Parse and check a store URL (naming its async driver); ``InvalidDatabaseURL`` if unusable."""
    if isinstance(url, URL):
        parsed = url
    else:
        try:
            parsed = make_url(url)
        except ArgumentError as error:
            raise translate(error, "reading the database URL") from error
    backend_of(parsed)
    if parsed.drivername not in _DRIVERS:
        raise InvalidDatabaseURL(
            f"unsupported driver {parsed.drivername!r} in the database URL; use {EXAMPLE_URLS}")
    return parsed.set(drivername=_DRIVERS[parsed.drivername])


def backend_of(url: str | URL) -> Backend:
    """Which backend a URL selects: ``"sqlite"`` or ``"postgresql"``."""
    try:
        name = (make_url(url) if isinstance(url, str) else url).get_backend_name()
    except ArgumentError as error:
        raise translate(error, "reading the database URL") from error
    if name in ("sqlite", "postgresql"):
        return name  # type: ignore[return-value]
    raise InvalidDatabaseURL(f"unsupported database {name!r} in the URL; use {EXAMPLE_URLS}")


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL, or None for an in-memory database."""
    parsed = make_url(url) if isinstance(url, str) else url
    name = parsed.database
    if not name or name == ":memory:" or name.startswith("file:") or parsed.query.get("mode") == "memory":
        return None
    return Path(name)


def create_engine(url: str | URL, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An async engine with this backend's connection set-up attached (see the module doc)."""
    parsed = parse_url(url)
    backend = backend_of(parsed)
    if backend == "sqlite":
        path = sqlite_path(parsed)
        if path is not None:
            with translating(f"creating the data folder {str(path.parent)!r}"):
                path.parent.mkdir(parents=True, exist_ok=True)
        with translating("creating the SQLite engine"):
            engine = create_async_engine(parsed, echo=echo, connect_args={"isolation_level": None},
                                         **_JSON)
        _install_sqlite_hooks(engine)
        return engine
    with translating("creating the PostgreSQL engine"):
        return create_async_engine(
            parsed, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
            pool_recycle=1800, connect_args={"timeout": 10}, **_JSON,
        )


def _bind_as_is(value: None) -> None:
    return value


def register_cheap_sqlite_binds() -> None:
    """Bind ``None`` and ``bool`` without sqlite3's adaptation protocol; same stored values.

    sqlite3 binds only exact ``int``/``float``/``str``/``bytearray`` directly; anything else,
    ``None`` and ``bool`` included, first goes through ``microprotocols_adapt``, which looks
    for ``__adapt__`` on the protocol and ``__conform__`` on the value and, finding neither,
    builds and discards two AttributeErrors (~2,500 instructions a value). A usage row has
    six such values (two flags, four optional columns): that was ~15,000 instructions per
    usage record on the outbox writer's thread. An adapter registered for the type is found
    first, in one dict lookup. ``None`` still binds as NULL and ``bool`` as the integer 0/1,
    exactly as without them. The registry is process-wide (sqlite3's own), which is why this
    is done once, here, and only for these two types; registering a base type (``int``,
    ``str``…) would instead send *every* value through adaptation.
    """
    sqlite3.register_adapter(type(None), _bind_as_is)
    sqlite3.register_adapter(bool, int)


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    register_cheap_sqlite_binds()

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL takes a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """An engine plus session factory for one URL; build once per process, ``close()`` at exit."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = parse_url(url)
        self.backend: Backend = backend_of(self.url)
        self.engine = create_engine(self.url, pool_size=pool_size, echo=echo)
        self._writer = async_sessionmaker(
            self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False)
        reader = self.engine
        if self.backend == "postgresql":
            reader = reader.execution_options(isolation_level="REPEATABLE READ")
        self._reader = async_sessionmaker(reader, expire_on_commit=False)
        self.on_change: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @asynccontextmanager
    async def transaction(self, doing: str = "writing to the store") -> AsyncIterator[AsyncSession]:
        """A session in a write transaction: committed when the block ends, rolled back on error.

        After a commit that moved the snapshot revision, every ``on_change`` callback runs
        (this process's snapshot feeds rebuild at once instead of at their next poll).
        """
        try:
            async with self._writer() as session:
                async with session.begin():
                    yield session
                changed = session.info.pop(REVISION_BUMPED, False)
        except TRANSLATED as error:
            raise translate(error, doing) from error
        if changed:
            for callback in list(self.on_change):
                callback()

    @asynccontextmanager
    async def read(self, doing: str = "reading the store") -> AsyncIterator[AsyncSession]:
        """A session for reading one consistent snapshot; it is rolled back, never committed."""
        try:
            async with self._reader() as session:
                try:
                    yield session
                finally:
                    await session.rollback()
        except TRANSLATED as error:
            raise translate(error, doing) from error

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

