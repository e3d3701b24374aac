"""The ``validating`` phase: a large batch's lines checked after its create call answered.

OpenAI's create answers ``validating`` and checks the input file afterwards. Ours checks a
small file inside the create call (the caller learns at once, in tens of milliseconds) and
stores a batch whose file holds more than ``INFERENCEOPS_BATCH_VALIDATE_INLINE_LINES``
requests as ``validating`` (``batch.batch_service``): reading and writing the rows of a
50,000-line file takes seconds, which an HTTP call should not hold. The batch executor
then checks it here, in a round of its own (``BatchExecutor``), exactly as the create call
would have (``batch_lines.scan``: the same rules, the same ``errors.data`` items with their
``line``), against the snapshot of that moment and the creating key as it is then (a key
revoked meanwhile fails the batch with ``invalid_api_key``):

* take the batch (``repo.batch_validate.take_for_validation``: a lease, so one executor
  checks it; one that dies mid-check leaves it to the next when the lease ends);
* read and check the file in a thread (blocking reads off the event loop);
* write the result and the lines in one transaction (``settle_validation``): ``in_progress``
  with one pending row per line, or ``failed`` naming the lines. A batch cancelled while it
  was checked keeps its cancel; the check is dropped.

No HTTP here; the store only through the executor's sessions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.batch.batch_lines import Scan, scan
from inferenceops.batch.files import FileStore
from inferenceops.batch.service import stored_name
from inferenceops.platform import ApiKey, Snapshot
from inferenceops.store.records import ToValidate
from inferenceops.store.repo import batch_validate as repo

log = logging.getLogger("inferenceops.batch")
Sessions = Callable[[bool], AbstractAsyncContextManager[AsyncSession]]
#: Batches one executor round looks at: each check may take seconds, and lines wait meanwhile.
PER_ROUND = 4


class Validator:
    """Checks ``validating`` batches for one executor (see the module doc)."""

    def __init__(self, sessions: Sessions, files: FileStore, snapshot: Callable[[], Snapshot],
                 key_of: Callable[[Snapshot, str], ApiKey | None], owner: str,
                 clock: Callable[[], datetime], lease_s: float) -> None:
        self._sessions = sessions
        self.files = files
        self._snapshot = snapshot
        self._key_of = key_of
        self.owner = owner
        self._clock = clock
        self.lease_s = lease_s
        self.checked = 0  # batches this executor checked (a test's and a log's measure)
        self.rounds = 0  # looks for validating batches completed (a test waits for the first)

    async def due(self) -> int:
        """Check the batches waiting for it (up to ``PER_ROUND``); how many this one settled."""
        async with self._sessions(False) as s:
            waiting = await repo.validating_batches(s, self._clock(), limit=PER_ROUND)
        settled = 0
        for batch in waiting:
            settled += await self.one(batch)
        self.rounds += 1
        return settled

    async def one(self, batch: ToValidate) -> bool:
        """Check ``batch`` if this executor can take it; True when its result was written."""
        async with self._sessions(True) as s:
            if not await repo.take_for_validation(s, batch.id, self.owner, self._clock(),
                                                  self.lease_s):
                return False
        try:
            checked = await self._check(batch)
            async with self._sessions(True) as s:
                now = self._clock().replace(microsecond=0)
                settled = await repo.settle_validation(s, batch.id, self.owner, now,
                                                       lines=checked.lines, errors=checked.errors)
                if not settled:
                    await repo.release(s, batch.id, self.owner)
        except Exception:  # give the batch back at once rather than when the lease ends
            async with self._sessions(True) as s:
                await repo.release(s, batch.id, self.owner)
            raise
        self.checked += settled
        if not settled:
            log.info("batch %s was cancelled while it was checked", batch.id)
        elif checked.errors:
            log.info("batch %s failed its check: %d line(s) do not fit", batch.id,
                     len(checked.errors))
        else:
            log.info("batch %s checked: %d lines to run", batch.id, len(checked.lines))
        return settled

    async def _check(self, batch: ToValidate) -> Scan:
        snapshot = self._snapshot()
        key = self._key_of(snapshot, batch.key_id)
        if key is None:
            return _failed("invalid_api_key", "The API key that created this batch was revoked.")
        try:
            return await asyncio.to_thread(scan, self.files.path_of(stored_name(
                batch.input_file_id)), batch.endpoint, key, snapshot)
        except FileNotFoundError:
            log.error("batch %s: its input file %s has no bytes", batch.id, batch.input_file_id)
            return _failed("file_not_found", f"The input file {batch.input_file_id} is gone.",
                           "input_file_id")


def _failed(code: str, message: str, param: str | None = None) -> Scan:
    error: dict[str, Any] = {"code": code, "message": message, "param": param, "line": None}
    return Scan(errors=[error])
