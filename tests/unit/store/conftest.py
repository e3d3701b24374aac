"""Store fixtures: every store test runs on SQLite (a temp file) and PostgreSQL.

PostgreSQL is found at 127.0.0.1:5432 (trust auth; ``INFERENCEOPS_TEST_PG_ADMIN``
overrides the admin DSN). When it does not answer, the ``postgresql`` params
are skipped with the reason — never failed. Each test gets its own database:
a copy of a migrated SQLite file, or ``CREATE DATABASE … TEMPLATE`` of a
migrated PostgreSQL database made once per session; all are dropped after.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from inferenceops.store import Database
from inferenceops.store.migrate import upgrade

T = TypeVar("T")
BACKENDS = ("sqlite", "postgresql")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private loop in another thread (safe from any fixture)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _admin_candidates() -> list[str]:
    if dsn := os.environ.get("INFERENCEOPS_TEST_PG_ADMIN"):
        return [dsn]
    users = dict.fromkeys([getpass.getuser(), "postgres"])
    return [f"postgresql://{user}@127.0.0.1:5432/test" for user in users]


async def _probe() -> tuple[str | None, str]:
    reasons = []
    for dsn in _admin_candidates():
        try:
            connection = await asyncpg.connect(dsn, timeout=3)
        except (TimeoutError, OSError, asyncpg.PostgresError) as error:
            reasons.append(f"{dsn}: {type(error).__name__}: {error}")
            continue
        await connection.close()
        return dsn, ""
    return None, "; ".join(reasons)


@dataclass
class Postgres:
    """Creates and drops scratch databases on the test server."""

    admin_dsn: str
    created: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        user = self.admin_dsn.split("://", 1)[1].split("@", 1)[0]
        return f"postgresql+asyncpg://{user}@127.0.0.1:5432/{name}"

    async def create(self, template: str | None = None) -> str:
        name = f"io_test_{uuid.uuid4().hex[:12]}"
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            suffix = f' TEMPLATE "{template}"' if template else ""
            await connection.execute(f'CREATE DATABASE "{name}"{suffix}')
        finally:
            await connection.close()
        self.created.append(name)
        return name

    async def drop(self, name: str) -> None:
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()
        if name in self.created:
            self.created.remove(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres | str]:
    """The scratch-database maker, or the reason PostgreSQL is unavailable."""
    dsn, reason = run_sync(_probe())
    if dsn is None:
        yield f"PostgreSQL not reachable at 127.0.0.1:5432 ({reason})"
        return
    pg = Postgres(dsn)
    yield pg
    for name in list(pg.created):
        run_sync(pg.drop(name))


def _require_pg(postgres: Postgres | str) -> Postgres:
    if isinstance(postgres, str):
        pytest.skip(postgres)
    return postgres


@pytest.fixture(scope="session")
def templates(postgres: Postgres | str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Migrated template databases, made once: {"sqlite": file path, "postgresql": db name}."""
    out: dict[str, str] = {}
    path = tmp_path_factory.mktemp("store-template") / "template.db"
    run_sync(upgrade(f"sqlite+aiosqlite:///{path}"))
    out["sqlite"] = str(path)
    if isinstance(postgres, Postgres):
        name = run_sync(postgres.create())
        run_sync(upgrade(postgres.url(name)))
        out["postgresql"] = name
    return out


@dataclass
class FreshDatabases:
    """Makes empty (unmigrated) databases of one backend for migration tests."""

    backend: str
    tmp_path: Path
    pg: Postgres | None

    async def new(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite+aiosqlite:///{self.tmp_path / uuid.uuid4().hex[:8] / 'store.db'}"
        assert self.pg is not None
        return self.pg.url(await self.pg.create())


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, postgres: Postgres | str) -> str:
    if request.param == "postgresql":
        _require_pg(postgres)
    return str(request.param)


@pytest.fixture
def fresh(backend: str, tmp_path: Path, postgres: Postgres | str) -> FreshDatabases:
    """A maker of empty databases on the test's backend (PostgreSQL ones are dropped at session end)."""
    return FreshDatabases(backend, tmp_path, postgres if isinstance(postgres, Postgres) else None)


@pytest.fixture
async def store_url(backend: str, templates: dict[str, str], tmp_path: Path,
                    postgres: Postgres | str) -> AsyncIterator[str]:
    """A migrated database of its own for this test."""
    if backend == "sqlite":
        path = tmp_path / "store.db"
        shutil.copyfile(templates["sqlite"], path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    pg = _require_pg(postgres)
    name = await pg.create(template=templates["postgresql"])
    yield pg.url(name)
    await pg.drop(name)


@pytest.fixture
async def db(store_url: str) -> AsyncIterator[Database]:
    database = Database(store_url)
    yield database
    await database.close()


@pytest.fixture
def digest() -> Callable[[], bytes]:
    """Distinct 32-byte digests (what KeyHasher would produce)."""
    return lambda: os.urandom(32)
