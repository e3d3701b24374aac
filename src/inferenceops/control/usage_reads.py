"""The store behind ``GET /v1/usage``: reports read from the rollups, bounded, off the hot path.

The data plane never imports the store; the composition root (``app.build_process``) hands
this to the gateway as its ``metering.reports.UsageSource``. It is also the ``usage-reads``
service, so its connection pool — opened on the first report, two connections — is
closed at shutdown. Inference never waits on it: only ``/v1/usage`` calls it.

Bounded: at most ``CONCURRENT`` reports read at once per process (others wait their turn),
and a report that has not finished within ``TIMEOUT_S`` — waiting included — is given up:
503 ``usage_unavailable``, as is a store that cannot answer.
"""

from __future__ import annotations

import asyncio
import logging

from inferenceops.errors import Unavailable
from inferenceops.metering.reports import UsageQuery, UsageReport
from inferenceops.store import Database
from inferenceops.store.errors import StoreError
from inferenceops.store.repo.usage_rollups import read_report

log = logging.getLogger("inferenceops.usage")

CONCURRENT = 4
TIMEOUT_S = 5.0


class UsageReads:
    """Answers usage reports from the store at ``url`` (see the module doc)."""

    name = "usage-reads"

    def __init__(self, url: str, *, concurrent: int = CONCURRENT,
                 timeout_s: float = TIMEOUT_S) -> None:
        self._url = url
        self._db: Database | None = None
        self._slots = asyncio.Semaphore(concurrent)
        self._timeout_s = timeout_s

    async def start(self) -> None:
        """Nothing: the pool opens on the first report."""

    async def run(self) -> None:
        """Nothing runs in the background."""

    async def stop(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def report(self, query: UsageQuery) -> UsageReport:
        try:
            async with asyncio.timeout(self._timeout_s), self._slots:
                if self._db is None:
                    self._db = Database(self._url, pool_size=2)
                async with self._db.read("reading usage") as tx:
                    return await read_report(tx, query)
        except TimeoutError:
            raise Unavailable(f"The usage report took longer than {self._timeout_s:g}s; ask for "
                              "a shorter range or try again shortly", code="usage_unavailable",
                              headers={"Retry-After": "5"}) from None
        except StoreError as exc:
            log.error("usage report failed: %s", exc)
            raise Unavailable("Usage reports are unavailable right now; try again shortly",
                              code="usage_unavailable", headers={"Retry-After": "5"}) from None
