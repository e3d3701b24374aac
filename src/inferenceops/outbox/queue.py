"""The bounded in-memory queue between the hot path and the outbox writer."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from inferenceops.histogram import Histogram
from inferenceops.outbox.records import AuditRecord, BodyRecord, Record, UsageRecord

_KIND = {UsageRecord: "usage", AuditRecord: "audit", BodyRecord: "body"}
#: Buckets of ``/metrics``' batch-size and write-time histograms (records; seconds).
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Outbox:
    """Records in arrival order, plus the set of keys used since the last drain.

    ``put`` never blocks: a full queue drops the record and counts it
    (``dropped[kind]``). ``ready`` is set once ``batch_size`` records wait, so
    the writer can flush early under load instead of at its next tick.
    """

    __slots__ = ("_records", "_keys", "max_records", "max_keys", "batch_size", "dropped",
                 "queued", "written", "write_failures", "last_batch", "last_write_s",
                 "batch_sizes", "write_seconds", "_ready")

    def __init__(self, *, max_records: int = 100_000, max_keys: int = 100_000,
                 batch_size: int = 1000) -> None:
        if max_records < 1 or max_keys < 1 or batch_size < 1:
            raise ValueError("outbox bounds must be at least 1")
        self._records: deque[Record] = deque()
        self._keys: set[str] = set()
        self.max_records = max_records
        self.max_keys = max_keys
        self.batch_size = batch_size
        self.dropped: dict[str, int] = {"usage": 0, "audit": 0, "body": 0, "key_use": 0}
        self.queued: dict[str, int] = {"usage": 0, "audit": 0, "body": 0}
        self.written: dict[str, int] = {"usage": 0, "audit": 0, "body": 0, "key_use": 0}
        # Kept up to date by the writer, shown in /metrics.
        self.write_failures = 0
        self.last_batch = 0
        self.last_write_s = 0.0
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self.write_seconds = Histogram(WRITE_BUCKETS)
        self._ready: asyncio.Event | None = None

    def put(self, record: Record) -> bool:
        """Queue ``record``; False (and counted) when the queue is full."""
        kind = _KIND[type(record)]
        records = self._records
        if len(records) >= self.max_records:
            self.dropped[kind] += 1
            return False
        records.append(record)
        self.queued[kind] += 1
        if len(records) >= self.batch_size and self._ready is not None:
            self._ready.set()
        return True

    def note_key_use(self, key_id: str) -> None:
        keys = self._keys
        if key_id in keys:
            return
        if len(keys) < self.max_keys:
            keys.add(key_id)
        else:
            self.dropped["key_use"] += 1  # picked up again on its next use after a drain

    @property
    def depth(self) -> int:
        return len(self._records)

    @property
    def empty(self) -> bool:
        return not self._records and not self._keys

    def take(self, limit: int) -> tuple[list[Record], set[str]]:
        """Up to ``limit`` records (oldest first) and every key used, removed from the queue."""
        records = self._records
        batch = [records.popleft() for _ in range(min(limit, len(records)))]
        keys, self._keys = self._keys, set()
        if self._ready is not None and len(records) < self.batch_size:
            self._ready.clear()
        return batch, keys

    def give_back(self, records: Iterable[Record], keys: Iterable[str]) -> None:
        """Return a batch the writer could not store (front of the queue, order kept).

        Bounded like ``put``: what no longer fits is dropped and counted.
        """
        back = list(records)
        room = max(0, self.max_records - len(self._records))
        for record in back[room:]:
            self.dropped[_KIND[type(record)]] += 1
        self._records.extendleft(reversed(back[:room]))
        for key in keys:
            self.note_key_use(key)

    def note_write(self, records: int, seconds: float) -> None:
        """The writer stored a batch of ``records`` in ``seconds`` (for ``/metrics``)."""
        self.last_batch = records
        self.last_write_s = seconds
        self.batch_sizes.observe(records)
        self.write_seconds.observe(seconds)

    def wait_ready(self) -> asyncio.Event:
        """The event set when a full batch waits (created on the writer's loop)."""
        if self._ready is None:
            self._ready = asyncio.Event()
            if len(self._records) >= self.batch_size:
                self._ready.set()
        return self._ready
