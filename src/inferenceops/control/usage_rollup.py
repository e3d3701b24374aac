"""The rollup service: keeps the usage rollups current and drops raw records past retention.

Every process runs it (``inferenceops serve``'s workers and ``inferenceops worker``), under
the process supervisor as ``usage-rollups``; the store decides who works
(``store.repo.usage_rollups``: each step locks one row — PostgreSQL's ``SKIP LOCKED``
lets the others skip, SQLite's write lock queues them — and a step that finds the rollups
refreshed less than half an interval ago does nothing). So one process at a time does the
work, whichever is free, and a crash anywhere loses nothing: the next step, here or in
another process, sums the same buckets again from the ledger.

Every ``interval_s`` (the first one ``interval_s`` after start, so starting never waits on
the store): steps until caught up — one transaction per step, a day of closed hours at
most, so a first run over a long ledger comes in pieces, ``pause_s`` apart so the outbox
writers get the store in between — then, at most once an hour,
retention: the raw records older than ``retention_days`` (whole UTC days, only those
already rolled up) go in batches of ``DROP_BATCH``, at most ``DROP_PER_RUN`` a run.
``run_once`` does one round at once (tests, benchmarks). Store failures are logged and
retried at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from inferenceops.store import Database
from inferenceops.store.errors import StoreError
from inferenceops.store.repo.usage_rollups import (
    DROP_BATCH,
    SETTLE,
    STEP_HOURS,
    drop_raw,
    mark_retention,
    roll_up,
)

log = logging.getLogger("inferenceops.rollups")

#: Raw records deleted by one round at most (the rest go at the next rounds).
DROP_PER_RUN = 20 * DROP_BATCH
RETENTION_EVERY_S = 3600.0
#: Pause between two steps while catching up.
STEP_PAUSE_S = 0.1


@dataclass
class RoundResult:
    """What one round did: steps taken (and skipped), hours summed, raw records dropped."""

    steps: int = 0
    skipped: bool = False
    hours: int = 0
    late_hours: int = 0
    dropped: int = 0
    caught_up: bool = True


class UsageRollups:
    """The ``usage-rollups`` service over the store at ``url`` (see the module doc)."""

    name = "usage-rollups"

    def __init__(self, url: str, *, interval_s: float, retention_days: int,
                 clock: Callable[[], float] = time.time, settle: timedelta = SETTLE,
                 step_hours: int = STEP_HOURS, pause_s: float = STEP_PAUSE_S) -> None:
        self._url = url
        self._interval_s = interval_s
        self._keep = None if retention_days == 0 else timedelta(days=retention_days)
        self._clock = clock
        self._settle = settle
        self._step_hours = step_hours
        self._pause_s = pause_s
        self._db: Database | None = None
        self._retention_due = 0.0  # monotonic time of the next retention pass

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self._url, pool_size=2)
        return self._db

    async def start(self) -> None:
        """Nothing: the first round comes one interval after start."""

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s * random.uniform(1.0, 1.1))  # spread processes
            try:
                await self.run_once()
            except StoreError as exc:
                log.error("usage rollup failed (retrying in %.0fs): %s", self._interval_s, exc)

    async def stop(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def run_once(self, *, min_gap: timedelta | None = None) -> RoundResult:
        """Step until caught up (or another process has the lock), then retention if due.

        ``min_gap``: skip when the rollups were refreshed this recently (default: half an
        interval; pass ``timedelta(0)`` to always work).
        """
        gap = timedelta(seconds=self._interval_s / 2) if min_gap is None else min_gap
        result = RoundResult()
        while True:
            async with self.db.transaction("rolling up usage") as tx:
                step = await roll_up(tx, self._now(), settle=self._settle,
                                     step_hours=self._step_hours, min_gap=gap)
            if step.skipped:
                result.skipped = result.steps == 0
                break
            result.steps += 1
            result.hours += step.hours
            result.late_hours += step.late_hours
            result.caught_up = step.caught_up
            if step.caught_up:
                break
            # Between catch-up steps, other writers get the store (SQLite has one write lock,
            # and whoever asks again first may keep getting it: the outbox writers wait).
            await asyncio.sleep(self._pause_s)
        if self._keep is not None and time.monotonic() >= self._retention_due:
            result.dropped = await self._retain(self._keep)
        if result.late_hours:
            log.info("usage rollup: %d hours summed again for late records", result.late_hours)
        return result

    async def _retain(self, keep: timedelta) -> int:
        async with self.db.transaction("marking usage retention") as tx:
            cutoff = await mark_retention(tx, self._now(), keep)
        dropped = 0
        if cutoff is not None:
            while dropped < DROP_PER_RUN:
                async with self.db.transaction("dropping old usage records") as tx:
                    done = await drop_raw(tx, cutoff, limit=DROP_BATCH)
                dropped += done
                if done < DROP_BATCH:
                    break
                await asyncio.sleep(self._pause_s)
        if dropped:
            log.info("usage retention: dropped %d raw records before %s", dropped, cutoff)
        more = dropped >= DROP_PER_RUN  # a backlog: carry on next round
        self._retention_due = time.monotonic() + (0.0 if more else RETENTION_EVERY_S)
        return dropped
