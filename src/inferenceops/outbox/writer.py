"""The outbox writer: one supervised service per process that stores what the data plane queued.

Every ``flush_s`` (default 1 s) — or at once when a full batch waits — it takes up to
``batch_size`` records and the keys used since the last flush and writes them in **one
transaction**: usage rows (one executemany), retained bodies (redacted here:
``retention.redact``), the keys' ``last_used_at``, audit entries; under load it goes on while
full batches wait, and leaves a part batch for the next turn. A failed write puts the batch
back at the front of the queue (bounded: what no longer fits is dropped and counted) and
retries after a backoff; a crash restarts it (the supervisor). ``stop`` — called after every
service that feeds the outbox has stopped — lets the batch being written finish (cancelling
``run`` does not interrupt it), then flushes until the queue is empty or its deadline passes.
Each batch stored is counted in the outbox's batch-size and write-time histograms
(``/metrics``). ``bench/usage_ledger.py`` measures the rate.

This module is the only part of the outbox that touches the store; the hot path imports
``outbox`` (the queue and records) only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from inferenceops.outbox.queue import Outbox
from inferenceops.outbox.records import AuditRecord, BodyRecord, Record, UsageRecord
from inferenceops.retention.capture import stream_answer
from inferenceops.retention.redact import redacted_body, redacted_value
from inferenceops.store import Database, repo
from inferenceops.store.errors import StoreError
from inferenceops.store.repo.retention import insert_bodies
from inferenceops.store.repo.usage import insert_usage

log = logging.getLogger("inferenceops.outbox")

FLUSH_S = 1.0
_RETRY_MAX_S = 30.0


class OutboxWriter:
    """Drains ``outbox`` into the store at ``url`` (see the module doc)."""

    name = "outbox-writer"

    def __init__(self, outbox: Outbox, url: str, *, flush_s: float = FLUSH_S) -> None:
        self._outbox = outbox
        self._url = url
        self._db: Database | None = None
        self._flush_s = flush_s
        self._writing: asyncio.Future[int] | None = None  # run's batch being written

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self._url)
        return self._db

    async def start(self) -> None:
        self._outbox.wait_ready()  # bind the batch-ready event to this loop

    async def run(self) -> None:
        ready = self._outbox.wait_ready()
        retry_s = self._flush_s
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(self._flush_s):
                    await ready.wait()
            try:
                await self._flush_whole()
                while self._outbox.depth >= self._outbox.batch_size:
                    await self._flush_whole()  # under load: full batches; a part waits for its turn
                retry_s = self._flush_s
            except StoreError as exc:
                self._outbox.write_failures += 1
                log.error("could not store %d queued records (retrying in %.0fs): %s",
                          self._outbox.depth, retry_s, exc)
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, _RETRY_MAX_S)

    async def _flush_whole(self) -> int:
        """``flush`` in a task of its own, which cancelling ``run`` does not cut short.

        A transaction interrupted half-way can leave its connection holding SQLite's write
        lock, so the final flush in ``stop`` would wait out the busy timeout and fail, and
        the queue would be lost at exit. Instead ``stop`` waits for this batch to finish.
        """
        self._writing = asyncio.ensure_future(self.flush())
        return await asyncio.shield(self._writing)

    async def stop(self) -> None:
        """Flush everything left (the supervisor bounds this with the service's deadline)."""
        try:
            if self._writing is not None:
                with suppress(Exception):  # a batch that failed went back to the queue: below
                    await self._writing
                self._writing = None
            while not self._outbox.empty:
                await self.flush()
        finally:
            if self._db is not None:
                await self._db.close()
                self._db = None

    async def flush(self) -> int:
        """Write one batch; returns how many records it held. Raises ``StoreError`` (batch kept)."""
        outbox = self._outbox
        if outbox.empty:
            return 0
        records, keys = outbox.take(outbox.batch_size)
        started = time.perf_counter()
        try:
            await self._write(records, keys)
        except BaseException:
            outbox.give_back(records, keys)
            raise
        outbox.note_write(len(records), time.perf_counter() - started)
        return len(records)

    async def _write(self, records: list[Record], keys: set[str]) -> None:
        usage = [r for r in records if isinstance(r, UsageRecord)]
        audits = [r for r in records if isinstance(r, AuditRecord)]
        bodies = [body_row(r) for r in records if isinstance(r, BodyRecord)]
        async with self.db.transaction("storing the outbox") as tx:
            if usage:
                await insert_usage(tx, usage)
            if bodies:
                await insert_bodies(tx, bodies)
            if keys:
                await repo.touch_last_used(tx, keys, datetime.now(UTC))
            for entry in audits:
                await repo.append_audit(tx, actor=entry.actor, action=entry.action,
                                        target_type=entry.target_type, target_id=entry.target_id,
                                        after=entry.after)
        written = self._outbox.written
        written["usage"] += len(usage)
        written["audit"] += len(audits)
        written["body"] += len(bodies)
        written["key_use"] += len(keys)


def body_row(record: BodyRecord) -> dict[str, Any]:
    """A kept body as its ``retained_bodies`` row: redacted here, off the request path."""
    at = datetime.fromtimestamp(record.at, UTC)
    response: str | None = None
    if record.response is not None:
        response = (orjson.dumps(redacted_value(stream_answer(record.response,
                                                               truncated=record.truncated))).decode()
                    if record.stream else redacted_body(record.response))
    return {"request_id": record.request_id, "at": at, "expires_at": at + timedelta(days=record.days),
            "team_id": record.team_id, "key_id": record.key_id, "model": record.model,
            "endpoint": record.endpoint, "stream": record.stream, "status": record.status,
            "request": redacted_body(record.request), "response": response,
            "truncated": record.truncated}
