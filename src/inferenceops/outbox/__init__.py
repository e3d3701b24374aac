"""The outbox: every side effect the data plane must not wait for, queued in memory, bounded.

The hot path only appends (no I/O, no await): one usage record per request
(``pipeline.settle``), the keys it saw used, audit entries (a soft budget
exceeded). One writer per process (``outbox.writer``, a supervised service)
drains it in batches into the store. The queue is bounded: past
``max_records`` a new record is dropped and counted by kind — visible in
``/metrics``, never silent — and the writer's flush on graceful shutdown
empties it first.

What a hard kill (``kill -9``) can lose: the records queued since the last
flush — at most ``flush_s`` of traffic (default 1 s) and never more than
``max_records``. Nothing here imports the store.
"""

from inferenceops.outbox.queue import Outbox
from inferenceops.outbox.records import AuditRecord, UsageRecord

__all__ = ["AuditRecord", "Outbox", "UsageRecord"]
