"""The retention sweep: deletes every retained body that must no longer be kept.

A supervised service of every process (``retention-sweep``). Every ``interval_s`` it
deletes, in statements of ``SWEEP_BATCH`` rows with a pause between them, the bodies whose
``expires_at`` passed, those of teams that no longer store bodies (retention changed to
``none`` or ``zero``, or the team deleted), and those older than their team's days now
(retention shortened) — the teams' current retention is the process's snapshot. Deleting
is idempotent, so several processes sweeping at once only share the work. Store failures
are logged and retried at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from inferenceops.platform.retention import Retention
from inferenceops.store import Database
from inferenceops.store.errors import StoreError
from inferenceops.store.repo.retention import SWEEP_BATCH, sweep

log = logging.getLogger("inferenceops.retention")

PAUSE_S = 0.05


class RetentionSweeper:
    """The ``retention-sweep`` service over the store at ``url`` (see the module doc)."""

    name = "retention-sweep"

    def __init__(self, url: str, retention: Callable[[], Mapping[str, Retention]], *,
                 interval_s: float, clock: Callable[[], float] = time.time,
                 pause_s: float = PAUSE_S) -> None:
        self._url = url
        self._retention = retention
        self._interval_s = interval_s
        self._clock = clock
        self._pause_s = pause_s
        self._db: Database | None = None
        self.deleted = 0  # bodies this process deleted, for /metrics

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self._url, pool_size=1)
        return self._db

    async def start(self) -> None:
        """Nothing: the first sweep comes one interval after start."""

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s * random.uniform(1.0, 1.1))  # spread processes
            try:
                await self.run_once()
            except StoreError as exc:
                log.error("retention sweep failed (retrying in %.0fs): %s", self._interval_s, exc)

    async def stop(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def run_once(self) -> int:
        """Sweep until nothing due is left; returns how many bodies went."""
        keep = {team: r.days for team, r in self._retention().items()
                if r.stores and r.days is not None}
        now = datetime.fromtimestamp(self._clock(), UTC)
        deleted = 0
        while True:
            async with self.db.transaction("deleting expired bodies") as tx:
                done = await sweep(tx, now, keep)
            deleted += done
            if done < SWEEP_BATCH:
                break
            await asyncio.sleep(self._pause_s)
        self.deleted += deleted
        if deleted:
            log.info("retention sweep: deleted %d retained bodies", deleted)
        return deleted
