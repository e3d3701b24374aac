"""The outbox's /metrics as Prometheus reads them: names, types and values of depth, capacity,
drops, failures, and the batch-size and write-time histograms (no I/O)."""

from __future__ import annotations

import re

import pytest

from inferenceops.histogram import Histogram
from inferenceops.outbox import Outbox, UsageRecord
from inferenceops.outbox.metrics import render_outbox_metrics

SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (\S+)$")


def parse(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(type by family, value by sample name with labels) of a Prometheus text exposition."""
    types: dict[str, str] = {}
    samples: dict[str, str] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ")
            types[family] = kind
        elif line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4, line
        else:
            match = SAMPLE.match(line)
            assert match is not None, line
            name, labels, value = match.groups()
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
            assert family in types, f"{name} has no TYPE line before it"
            assert (name != family) == (types[family] == "histogram"), name
            samples[name + (labels or "")] = value
    return types, samples


def usage(n: int) -> UsageRecord:
    return UsageRecord(request_id=f"r{n}", at=0.0, key_id="key", team_id="team", principal_id="usr",
                       principal_kind="user", model="m", deployment="d", replica="d-0",
                       endpoint="chat/completions", priority="interactive", stream=False,
                       prompt_tokens=1, completion_tokens=1, tokens_reported=True, cost_nanos=0,
                       status=200, error_code=None, latency_ms=1.0, first_byte_ms=None)


def test_depth_capacity_drops_and_every_batch_written_render_under_their_names() -> None:
    box = Outbox(max_records=3, batch_size=2)
    for n in range(5):
        box.put(usage(n))
    box.write_failures = 1
    box.note_write(2, 0.004)
    box.note_write(1000, 0.3)
    box.written["usage"] = 1002
    types, samples = parse(render_outbox_metrics(box))
    assert types == {
        "inferenceops_outbox_depth": "gauge",
        "inferenceops_outbox_capacity": "gauge",
        "inferenceops_outbox_queued_total": "counter",
        "inferenceops_outbox_written_total": "counter",
        "inferenceops_outbox_dropped_total": "counter",
        "inferenceops_outbox_write_failures_total": "counter",
        "inferenceops_outbox_batch_size": "histogram",
        "inferenceops_outbox_write_seconds": "histogram",
        "inferenceops_outbox_last_batch_size": "gauge",
        "inferenceops_outbox_last_write_seconds": "gauge",
    }
    assert samples["inferenceops_outbox_depth"] == "3"
    assert samples["inferenceops_outbox_capacity"] == "3"
    assert samples['inferenceops_outbox_queued_total{kind="usage"}'] == "3"
    assert samples['inferenceops_outbox_written_total{kind="usage"}'] == "1002"
    assert samples['inferenceops_outbox_dropped_total{kind="usage"}'] == "2"
    assert samples['inferenceops_outbox_dropped_total{kind="key_use"}'] == "0"
    assert samples["inferenceops_outbox_write_failures_total"] == "1"
    assert samples["inferenceops_outbox_last_batch_size"] == "1000"
    assert samples["inferenceops_outbox_last_write_seconds"] == "0.300000"
    sizes = {k: v for k, v in samples.items() if k.startswith("inferenceops_outbox_batch_size")}
    assert sizes == {
        **{f'inferenceops_outbox_batch_size_bucket{{le="{le}"}}': "0" for le in ("1",)},
        **{f'inferenceops_outbox_batch_size_bucket{{le="{le}"}}': "1"
           for le in ("10", "50", "100", "250", "500")},
        **{f'inferenceops_outbox_batch_size_bucket{{le="{le}"}}': "2"
           for le in ("1000", "2500", "5000", "10000", "+Inf")},
        "inferenceops_outbox_batch_size_sum": "1002.0",
        "inferenceops_outbox_batch_size_count": "2",
    }
    seconds = {k: v for k, v in samples.items() if k.startswith("inferenceops_outbox_write_seconds")}
    assert seconds == {
        **{f'inferenceops_outbox_write_seconds_bucket{{le="{le}"}}': "0" for le in ("0.001", "0.0025")},
        **{f'inferenceops_outbox_write_seconds_bucket{{le="{le}"}}': "1"
           for le in ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25")},
        **{f'inferenceops_outbox_write_seconds_bucket{{le="{le}"}}': "2"
           for le in ("0.5", "1", "2.5", "5", "10", "+Inf")},
        "inferenceops_outbox_write_seconds_sum": repr(0.004 + 0.3),
        "inferenceops_outbox_write_seconds_count": "2",
    }


def test_a_fresh_outbox_renders_empty_histograms() -> None:
    _, samples = parse(render_outbox_metrics(Outbox()))
    assert samples['inferenceops_outbox_batch_size_bucket{le="+Inf"}'] == "0"
    assert samples["inferenceops_outbox_write_seconds_count"] == "0"
    assert samples["inferenceops_outbox_capacity"] == "100000"


def test_histogram_buckets_hold_values_up_to_and_including_their_bound() -> None:
    h = Histogram((1.0, 5.0))
    for value in (0.5, 1.0, 1.5, 5.0, 7.0):
        h.observe(value)
    assert h.counts == [2, 2, 1] and h.count == 5 and h.total == 15.0
    assert h.cumulative() == [("1", 2), ("5", 4), ("+Inf", 5)]
    with pytest.raises(ValueError):
        Histogram((5.0, 1.0))
