"""Admission counters of one process, exposed on ``/metrics`` in Prometheus text format.

Plain integer attributes: incrementing one costs a few nanoseconds on the hot
path, and the whole set is rendered only when scraped.
"""

from __future__ import annotations

from collections.abc import Mapping

from inferenceops.admission.fair_queue import DeploymentGate


class AdmissionMetrics:
    __slots__ = ("admitted", "refusals", "ledger_errors", "fail_open", "soft_budget_overruns",
                 "heartbeat_failures")

    def __init__(self) -> None:
        self.admitted = 0
        self.refusals: dict[str, int] = {}
        self.ledger_errors = 0
        self.fail_open = 0
        self.soft_budget_overruns = 0
        self.heartbeat_failures = 0  # instance.py: heartbeats of this instance that failed

    def refused(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def render(self, gates: Mapping[str, DeploymentGate]) -> str:
        lines = [
            "# HELP inferenceops_admission_admitted_total Requests admitted by admission control.",
            "# TYPE inferenceops_admission_admitted_total counter",
            f"inferenceops_admission_admitted_total {self.admitted}",
            "# HELP inferenceops_admission_refused_total Requests refused, by what refused them.",
            "# TYPE inferenceops_admission_refused_total counter",
            *(f'inferenceops_admission_refused_total{{reason="{reason}"}} {count}'
              for reason, count in sorted(self.refusals.items())),
            "# HELP inferenceops_admission_ledger_errors_total Failed calls to the admission ledger.",
            "# TYPE inferenceops_admission_ledger_errors_total counter",
            f"inferenceops_admission_ledger_errors_total {self.ledger_errors}",
            "# HELP inferenceops_admission_fail_open_total Requests admitted unmetered because the "
            "ledger was unreachable (fail open).",
            "# TYPE inferenceops_admission_fail_open_total counter",
            f"inferenceops_admission_fail_open_total {self.fail_open}",
            "# HELP inferenceops_admission_heartbeat_failures_total Heartbeats of this process's "
            "admission instance that did not reach Redis.",
            "# TYPE inferenceops_admission_heartbeat_failures_total counter",
            f"inferenceops_admission_heartbeat_failures_total {self.heartbeat_failures}",
            "# HELP inferenceops_budget_soft_overruns_total Requests admitted past a soft budget.",
            "# TYPE inferenceops_budget_soft_overruns_total counter",
            f"inferenceops_budget_soft_overruns_total {self.soft_budget_overruns}",
            "# HELP inferenceops_queue_in_flight Requests holding a deployment slot.",
            "# TYPE inferenceops_queue_in_flight gauge",
            *(f'inferenceops_queue_in_flight{{deployment="{name}"}} {gate.in_flight}'
              for name, gate in sorted(gates.items())),
            "# HELP inferenceops_queue_waiting Requests waiting for a deployment slot.",
            "# TYPE inferenceops_queue_waiting gauge",
            *(f'inferenceops_queue_waiting{{deployment="{name}"}} {gate.waiting}'
              for name, gate in sorted(gates.items())),
        ]
        return "\n".join(lines) + "\n"

