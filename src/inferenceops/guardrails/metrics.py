"""What guardrails found and did, as Prometheus counters of this process — never the text.

Labels: the policies that applied (``pii@3,small@1``: bounded by the attachments
operators make), the entity type (``card``… or ``custom`` for patterns and keywords;
``model`` and ``input_size`` for those rules) and the action (flag, redact, block).
Incremented by the settle stage from ``RequestFacts.guardrail_findings``.
"""

from __future__ import annotations

from collections.abc import Mapping

NAME = "inferenceops_guardrail_findings_total"


class GuardrailMeter:
    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}

    def add(self, policies: str, findings: Mapping[tuple[str, str], int]) -> None:
        counts = self._counts
        for (entity, action), n in findings.items():
            at = (policies, entity, action)
            counts[at] = counts.get(at, 0) + n

    def count(self, policies: str, entity: str, action: str) -> int:
        return self._counts.get((policies, entity, action), 0)

    def render(self) -> str:
        lines = [f"# HELP {NAME} What guardrail policies found in prompts and answers, by the "
                 "policies that applied, entity type and action (never the text).",
                 f"# TYPE {NAME} counter"]
        for (policies, entity, action), n in sorted(self._counts.items()):
            lines.append(f'{NAME}{{policies="{policies}",entity="{entity}",action="{action}"}} {n}')
        return "\n".join(lines) + "\n"
