"""A real PostgreSQL for tests: find the server, make and drop scratch databases.

The server is looked for at 127.0.0.1:5432 (trust auth; ``INFERENCEOPS_TEST_PG_ADMIN``
overrides the admin DSN). ``probe`` says why it is unavailable, so callers can
skip with that reason rather than fail.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private loop in another thread (safe from any fixture)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _admin_candidates() -> list[str]:
    if dsn := os.environ.get("INFERENCEOPS_TEST_PG_ADMIN"):
        return [dsn]
    users = dict.fromkeys([getpass.getuser(), "postgres"])
    return [f"postgresql://{user}@127.0.0.1:5432/test" for user in users]


async def probe() -> tuple[str | None, str]:
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
