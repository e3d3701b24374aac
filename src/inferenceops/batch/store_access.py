"""How the Files and Batch APIs reach the store: a small pool opened on first use, and a
store failure turned into one 503 with ``Retry-After`` that names the API (not a 500)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.errors import Unavailable
from inferenceops.store import Database
from inferenceops.store.errors import StoreError

log = logging.getLogger("inferenceops.batch")
T = TypeVar("T")


class StoreAccess:
    """The store at ``url`` for one API (``what``: "files", "batches")."""

    def __init__(self, url: str, what: str) -> None:
        self._url = url
        self._what = what
        self._db: Database | None = None

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @asynccontextmanager
    async def _session(self, write: bool) -> AsyncIterator[AsyncSession]:
        if self._db is None:
            self._db = Database(self._url, pool_size=2)
        what = self._what
        try:
            context = self._db.transaction(what) if write else self._db.read(what)
            async with context as session:
                yield session
        except StoreError as exc:
            log.error("%s: the store failed: %s", what, exc)
            raise Unavailable(f"{what.capitalize()} are unavailable right now; try again "
                              "shortly.", code=f"{what}_unavailable",
                              headers={"Retry-After": "5"}) from None

    async def _run(self, write: bool, call: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with self._session(write) as session:
            return await call(session)
