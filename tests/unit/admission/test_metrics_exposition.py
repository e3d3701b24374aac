"""Admission's counters as Prometheus reads them: names, types, labels and values (no I/O).

Dashboards and alerts (deploy/, docs/operations.md) are written against these
names; a counter that renders the wrong value or under another name breaks them
silently. mutmut found the exposition unpinned (``make mutation``). The HELP
texts are for humans and are left free.
"""

from __future__ import annotations

import re

from inferenceops.admission.fair_queue import DeploymentGate, Priority
from inferenceops.admission.metrics import AdmissionMetrics

SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (\S+)$")


def parse(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(type by family, value by sample name with labels) of a Prometheus text exposition."""
    types, samples = {}, {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ")
            types[family] = kind
        elif line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4, line  # a family name and some words
        else:
            match = SAMPLE.match(line)
            assert match is not None, line
            name, labels, value = match.groups()
            assert name in types, f"{name} has no TYPE line before it"
            samples[name + (labels or "")] = value
    return types, samples


async def test_every_counter_and_gauge_renders_under_its_name_with_its_value() -> None:
    metrics = AdmissionMetrics()
    metrics.admitted, metrics.ledger_errors, metrics.fail_open = 41, 3, 2
    metrics.soft_budget_overruns, metrics.heartbeat_failures = 5, 7
    for reason in ("tokens", "budget", "tokens", "queue_full"):
        metrics.refused(reason)
    waits = {Priority.INTERACTIVE: 1.0, Priority.BACKGROUND: 1.0}
    busy = DeploymentGate("llama", 2, max_queue=10, max_wait_s=waits)
    idle = DeploymentGate("embed", 1, max_queue=10, max_wait_s=waits)
    for _ in range(2):
        assert await busy.acquire("t", 1.0, Priority.INTERACTIVE) == 0.0
    types, samples = parse(metrics.render({"llama": busy, "embed": idle}))
    assert types == {
        "inferenceops_admission_admitted_total": "counter",
        "inferenceops_admission_refused_total": "counter",
        "inferenceops_admission_ledger_errors_total": "counter",
        "inferenceops_admission_fail_open_total": "counter",
        "inferenceops_admission_heartbeat_failures_total": "counter",
        "inferenceops_budget_soft_overruns_total": "counter",
        "inferenceops_queue_in_flight": "gauge",
        "inferenceops_queue_waiting": "gauge",
    }
    assert samples == {
        "inferenceops_admission_admitted_total": "41",
        'inferenceops_admission_refused_total{reason="budget"}': "1",
        'inferenceops_admission_refused_total{reason="queue_full"}': "1",
        'inferenceops_admission_refused_total{reason="tokens"}': "2",
        "inferenceops_admission_ledger_errors_total": "3",
        "inferenceops_admission_fail_open_total": "2",
        "inferenceops_admission_heartbeat_failures_total": "7",
        "inferenceops_budget_soft_overruns_total": "5",
        'inferenceops_queue_in_flight{deployment="embed"}': "0",
        'inferenceops_queue_in_flight{deployment="llama"}': "2",
        'inferenceops_queue_waiting{deployment="embed"}': "0",
        'inferenceops_queue_waiting{deployment="llama"}': "0",
    }


def test_a_fresh_process_renders_zeros_and_no_refusal_or_queue_samples() -> None:
    types, samples = parse(AdmissionMetrics().render({}))
    assert len(types) == 8
    assert samples == {
        "inferenceops_admission_admitted_total": "0",
        "inferenceops_admission_ledger_errors_total": "0",
        "inferenceops_admission_fail_open_total": "0",
        "inferenceops_admission_heartbeat_failures_total": "0",
        "inferenceops_budget_soft_overruns_total": "0",
    }
