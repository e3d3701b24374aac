"""Tokens and cost per team and model, as Prometheus counters of this process.

Incremented by the settle stage (a dict update per request); rendered by ``/metrics``.
Labels are the team id and the model name only — never a key, a user or a request —
so the series are bounded by teams × models, which operators define. Requests of a
key without a team (a platform key) count under ``team="none"``. The usage ledger
(``usage_records``) is the record; these are for dashboards and alerts.
"""

from __future__ import annotations

from inferenceops.metering.usage import Usage
from inferenceops.platform.policy import from_nanos

NO_TEAM = "none"
_SERIES = (
    ("inferenceops_usage_requests_total", "Requests settled (answered or not), by team and model."),
    ("inferenceops_usage_prompt_tokens_total", "Prompt tokens used, by team and model."),
    ("inferenceops_usage_completion_tokens_total", "Completion tokens used, by team and model."),
    ("inferenceops_usage_cached_tokens_total",
     "Prompt tokens the engines' prefix caches served, by team and model."),
    ("inferenceops_usage_estimated_requests_total",
     "Requests whose tokens the gateway counted (no engine reported them), by team and model."),
    ("inferenceops_usage_cost_total", "Cost in the platform currency, by team and model."),
)


class UsageMeter:
    """Per (team, model): requests, prompt, completion, cached tokens, estimated, cost (nanos)."""

    __slots__ = ("_totals",)

    def __init__(self) -> None:
        self._totals: dict[tuple[str, str], list[int]] = {}

    def add(self, team_id: str | None, model: str, usage: Usage, reported: bool, cost: int) -> None:
        at = (team_id or NO_TEAM, model)
        totals = self._totals.get(at)
        if totals is None:
            totals = self._totals[at] = [0, 0, 0, 0, 0, 0]
        totals[0] += 1
        totals[1] += usage.prompt_tokens
        totals[2] += usage.completion_tokens
        totals[3] += usage.cached_tokens
        totals[4] += not reported
        totals[5] += cost

    def totals(self, team_id: str | None, model: str) -> tuple[int, ...]:
        return tuple(self._totals.get((team_id or NO_TEAM, model), (0,) * 6))

    def render(self) -> str:
        lines: list[str] = []
        ordered = sorted(self._totals.items())
        for index, (name, text) in enumerate(_SERIES):
            lines += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
            for (team, model), totals in ordered:
                value = totals[index]
                shown = from_nanos(value) if index == 5 else value  # cost: exact decimal text
                lines.append(f'{name}{{team="{_label(team)}",model="{_label(model)}"}} {shown}')
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
