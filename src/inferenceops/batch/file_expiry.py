"""The file expiry sweep: deletes the files of the Files API whose ``expires_at`` has passed.

A supervised service of the processes that keep the files folder (``files-expiry``). Every
``interval_s`` it takes the expired files no unfinished batch reads (a running batch's input
waits until the batch ends), in batches of ``BATCH``: each row is deleted first, in its own
transaction, then its bytes — so a crash in between leaves at most bytes no row names,
never a row whose bytes are gone. Expired files are hidden from their owners from the
moment they expire (``repo.files``); this only frees the disk. Deleting is idempotent, so
several processes sweeping the same folder only share the work. Store failures are logged
and retried at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime

from inferenceops.batch.files import FileStore
from inferenceops.store import Database
from inferenceops.store.errors import StoreError
from inferenceops.store.repo.files import expired_files, remove_file_row

log = logging.getLogger("inferenceops.files")

BATCH = 100


class FileExpiry:
    """The ``files-expiry`` service over the store at ``url`` and the folder ``files``."""

    name = "files-expiry"

    def __init__(self, url: str, files: FileStore, *, interval_s: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._url = url
        self._files = files
        self._interval_s = interval_s
        self._clock = clock
        self._db: Database | None = None
        self.deleted = 0

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
                log.error("file expiry sweep failed (retrying in %.0fs): %s", self._interval_s, exc)

    async def stop(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def run_once(self) -> int:
        """Delete every file expired now (but those a batch still reads); how many went."""
        deleted = 0
        while True:
            async with self.db.read("finding expired files") as tx:
                due = await expired_files(tx, self._clock(), limit=BATCH)
            for found in due:
                async with self.db.transaction("deleting an expired file") as tx:
                    await remove_file_row(tx, found.id)
                if not await self._files.remove(found.path):
                    log.warning("files: expired %s had no bytes at %s", found.id, found.path)
                deleted += 1
            if len(due) < BATCH:
                break
        self.deleted += deleted
        if deleted:
            log.info("files: deleted %d expired file(s)", deleted)
        return deleted
