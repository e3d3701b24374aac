"""``AdmissionControl.finish`` is safe to call twice: one slot back, one settlement (no I/O).

Settle calls it exactly once today; the guard is what keeps a second call —
a retry path, a cleanup that runs twice — from giving back a slot the request
no longer holds or charging it twice. mutmut found the guard unpinned
(``make mutation``).
"""

from __future__ import annotations

from collections.abc import Sequence

from inferenceops.admission.control import AdmissionControl
from inferenceops.admission.ledger import Check
from inferenceops.admission.memory_ledger import MemoryLedger
from inferenceops.platform import (
    ApiKey,
    Catalog,
    Deployment,
    Endpoint,
    Identity,
    Model,
    Principal,
    Replica,
    Snapshot,
)
from inferenceops.platform.policy import Budget, BudgetRule, Period, Policy, Price, Scope
from inferenceops.platform.priority import Priority

KEY = ApiKey("key_a", "sk-io-a", Principal("usr_1"), "team_a", frozenset({"inference"}))
DEPLOYMENT = Deployment("dep", "openai", "served", (Replica("r", "http://127.0.0.1:1/v1"),),
                        capacity=1)
MODEL = Model("m", DEPLOYMENT, frozenset({Endpoint.CHAT}))
POLICY = Policy(budgets=[BudgetRule(Scope.TEAM, "team_a", Budget(10**12, Period.MONTHLY))],
                prices={"m": Price(input=1, output=1)})
SNAPSHOT = Snapshot(Catalog([MODEL]), Identity([], {"team_a": ["m"]}), POLICY)


class CountingLedger(MemoryLedger):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def settle(self, request_id: str, checks: Sequence[Check], tokens: int, cost: int) -> None:
        self.calls.append("settle")
        await super().settle(request_id, checks, tokens, cost)

    async def release(self, request_id: str, checks: Sequence[Check]) -> None:
        self.calls.append("release")
        await super().release(request_id, checks)


async def test_finishing_twice_gives_the_slot_back_once_and_settles_once() -> None:
    ledger = CountingLedger()
    control = AdmissionControl(ledger)
    first = await control.admit(SNAPSHOT, KEY, MODEL, 30, 10, Priority.INTERACTIVE)
    assert first is not None and first.ticket.gate is not None and first.ticket.metered
    for _ in range(2):
        await control.finish(first.ticket, reached_engine=True, tokens=4, cost=13)
    assert ledger.calls == ["settle"]
    assert (first.ticket.gate, first.ticket.metered) == (None, False)
    second = await control.admit(SNAPSHOT, KEY, MODEL, 30, 10, Priority.INTERACTIVE)
    assert second is not None and second.queued_s == 0.0  # the one slot was free
    for _ in range(2):
        await control.finish(second.ticket, reached_engine=False, tokens=0, cost=0)
    assert ledger.calls == ["settle", "release"]
    assert 'inferenceops_queue_in_flight{deployment="dep"} 0' in control.render_metrics()
