"""Store fixtures: every store test runs on SQLite (a temp file) and PostgreSQL.

PostgreSQL is found at 127.0.0.1:5432 (trust auth; ``INFERENCEOPS_TEST_PG_ADMIN``
overrides the admin DSN). When it does not answer, the ``postgresql`` params
are skipped with the reason — never failed. Each test gets its own database:
a copy of a migrated SQLite file, or ``CREATE DATABASE … TEMPLATE`` of a
migrated PostgreSQL database made once per session; all are dropped after.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from tests.support.postgres import Postgres, probe, run_sync

from inferenceops.store import Database
from inferenceops.store.migrate import upgrade

T = TypeVar("T")
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres | str]:
    """The scratch-database maker, or the reason PostgreSQL is unavailable."""
    dsn, reason = run_sync(probe())
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
