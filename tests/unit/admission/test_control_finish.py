"""``AdmissionControl`` on its own, where mutmut found it unpinned (``make mutation``; no I/O).

``finish`` is safe to call twice — one slot back, one settlement: settle calls it
exactly once today, and the guard is what keeps a second call (a retry path, a
cleanup that runs twice) from giving back a slot the request no longer holds or
charging it twice. A deployment with only a capacity never touches the ledger,
a full queue's refusal names the deployment and when to retry, and an
unreachable ledger fails closed unless fail-open was asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from inferenceops.admission.control import AdmissionControl
from inferenceops.admission.ledger import Check, LedgerUnavailable
from inferenceops.admission.memory_ledger import MemoryLedger
from inferenceops.errors import QueueFull, Unavailable
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
                prices={"m": Price.per_token(input=1, output=1)})
SNAPSHOT = Snapshot(Catalog([MODEL]), Identity([], {"team_a": ["m"]}), POLICY)


class CountingLedger(MemoryLedger):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def admit(self, request_id: str, checks: Sequence[Check], lease_s: float):  # type: ignore[no-untyped-def]
        self.calls.append("admit")
        return await super().admit(request_id, checks, lease_s)

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
    assert ledger.calls == ["admit", "settle"]
    assert (first.ticket.gate, first.ticket.metered) == (None, False)
    second = await control.admit(SNAPSHOT, KEY, MODEL, 30, 10, Priority.INTERACTIVE)
    assert second is not None and second.queued_s == 0.0  # the one slot was free
    for _ in range(2):
        await control.finish(second.ticket, reached_engine=False, tokens=0, cost=0)
    assert ledger.calls == ["admit", "settle", "admit", "release"]
    assert 'inferenceops_queue_in_flight{deployment="dep"} 0' in control.render_metrics()


async def test_a_capacity_alone_never_touches_the_ledger_and_a_full_queue_says_so() -> None:
    ledger = CountingLedger()
    control = AdmissionControl(ledger)
    solo = replace(DEPLOYMENT, name="solo", queue=replace(DEPLOYMENT.queue, max_waiting=0))
    model = replace(MODEL, deployment=solo)
    bare = Snapshot(Catalog([model]), Identity([], {"team_a": ["m"]}), Policy())
    held = await control.admit(bare, KEY, model, 30, 10, Priority.INTERACTIVE)
    assert held is not None and held.ticket.gate is not None and not held.ticket.metered
    with pytest.raises(QueueFull) as info:
        await control.admit(bare, KEY, model, 30, 10, Priority.INTERACTIVE)
    error = info.value
    assert (error.status, error.code) == (429, "queue_full")
    assert error.message == ("deployment 'solo' is at capacity and its queue is full (0 waiting); "
                             "retry in 1.0 s")
    assert error.extra == {"limit": "deployment_capacity", "retry_after_s": 1.0}
    assert error.headers == {"Retry-After": "1", "retry-after-ms": "1000"}
    await control.finish(held.ticket, reached_engine=True, tokens=4, cost=0)
    assert ledger.calls == []


async def test_an_unreachable_ledger_fails_closed_unless_told_otherwise() -> None:
    class Down(MemoryLedger):
        async def admit(self, request_id: str, checks: Sequence[Check], lease_s: float):  # type: ignore[no-untyped-def]
            raise LedgerUnavailable("connection refused")

    with pytest.raises(Unavailable):
        await AdmissionControl(Down()).admit(SNAPSHOT, KEY, MODEL, 30, 10, Priority.INTERACTIVE)
    admitted = await AdmissionControl(Down(), fail_open=True).admit(SNAPSHOT, KEY, MODEL, 30, 10,
                                                                     Priority.INTERACTIVE)
    assert admitted is not None and not admitted.ticket.metered
