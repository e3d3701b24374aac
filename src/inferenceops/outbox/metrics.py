"""The outbox in Prometheus text: how deep the queue is, what was dropped, how writes go.

Depth against capacity (``inferenceops_outbox_depth`` / ``inferenceops_outbox_capacity``),
drops and refused writes by the counters, and every batch the writer stored in two
histograms: its size and how long its transaction took (the ``last_*`` gauges show only
the batch before the scrape).
"""

from __future__ import annotations

from inferenceops.histogram import Histogram
from inferenceops.outbox.queue import Outbox


def _histogram(name: str, help_text: str, h: Histogram) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} histogram",
            *(f'{name}_bucket{{le="{le}"}} {n}' for le, n in h.cumulative()),
            f"{name}_sum {h.total!r}", f"{name}_count {h.count}"]


def render_outbox_metrics(outbox: Outbox) -> str:
    lines = [
        "# HELP inferenceops_outbox_depth Records waiting to be written to the store.",
        "# TYPE inferenceops_outbox_depth gauge",
        f"inferenceops_outbox_depth {outbox.depth}",
        "# HELP inferenceops_outbox_capacity Records the queue holds before it drops new ones.",
        "# TYPE inferenceops_outbox_capacity gauge",
        f"inferenceops_outbox_capacity {outbox.max_records}",
        "# HELP inferenceops_outbox_queued_total Records queued, by kind.",
        "# TYPE inferenceops_outbox_queued_total counter",
        *(f'inferenceops_outbox_queued_total{{kind="{k}"}} {v}' for k, v in outbox.queued.items()),
        "# HELP inferenceops_outbox_written_total Records written to the store, by kind.",
        "# TYPE inferenceops_outbox_written_total counter",
        *(f'inferenceops_outbox_written_total{{kind="{k}"}} {v}' for k, v in outbox.written.items()),
        "# HELP inferenceops_outbox_dropped_total Records dropped because the queue was full.",
        "# TYPE inferenceops_outbox_dropped_total counter",
        *(f'inferenceops_outbox_dropped_total{{kind="{k}"}} {v}' for k, v in outbox.dropped.items()),
        "# HELP inferenceops_outbox_write_failures_total Batches the store refused (kept, retried).",
        "# TYPE inferenceops_outbox_write_failures_total counter",
        f"inferenceops_outbox_write_failures_total {outbox.write_failures}",
        *_histogram("inferenceops_outbox_batch_size", "Records in each batch written to the store.",
                    outbox.batch_sizes),
        *_histogram("inferenceops_outbox_write_seconds",
                    "How long each batch's transaction took to write.", outbox.write_seconds),
        "# HELP inferenceops_outbox_last_batch_size Records in the last batch written.",
        "# TYPE inferenceops_outbox_last_batch_size gauge",
        f"inferenceops_outbox_last_batch_size {outbox.last_batch}",
        "# HELP inferenceops_outbox_last_write_seconds How long the last batch took to write.",
        "# TYPE inferenceops_outbox_last_write_seconds gauge",
        f"inferenceops_outbox_last_write_seconds {outbox.last_write_s:.6f}",
    ]
    return "\n".join(lines) + "\n"
