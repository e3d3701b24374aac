"""The deployment gate's housekeeping and its refusals (``admission.fair_queue``).

Pinned here (mutmut found them loose, ``make mutation``): once more than 64
teams have left a class, their stale heap entries are compacted away and the
teams still waiting are served as before; past 64 teams, idle teams whose turn
the class has passed are forgotten but a team that is waiting never is; a class
with no wait refuses without ever queueing; and every refusal of a bad call or
setting says what was wrong.
"""

from __future__ import annotations

import asyncio
import enum

import pytest

from inferenceops.admission import fair_queue
from inferenceops.admission.fair_queue import DeploymentGate, QueueRejected
from inferenceops.platform.priority import Priority

HI, LO = Priority.INTERACTIVE, Priority.BACKGROUND
LONG = {HI: 60.0, LO: 60.0}


async def settle(rounds: int = 8) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_many_teams_leaving_are_compacted_away_and_the_teams_left_are_served_in_turn() -> None:
    gate = DeploymentGate("dep", 1, max_queue=1000, max_wait_s=LONG)
    await gate.acquire("holder", 1.0, HI)
    order: list[str] = []

    async def stay(team: str) -> None:
        await gate.acquire(team, 1.0, HI)
        order.append(team)

    staying = [asyncio.ensure_future(stay("a"))]
    leaving = [asyncio.ensure_future(gate.acquire(f"gone-{i}", 1.0, HI)) for i in range(70)]
    staying.append(asyncio.ensure_future(stay("b")))
    await settle()
    assert gate.waiting == 72
    for task in leaving:  # one at a time: each leaves a stale heap entry, 65 trigger a compaction
        task.cancel()
        await settle(2)
    results = await asyncio.gather(*leaving, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
    assert gate.waiting == 2 and gate.stats().cancelled_while_waiting == 70
    assert gate._self_check() == []
    for _ in range(3):
        gate.release()
        await settle()
    await asyncio.gather(*staying)
    assert order == ["a", "b"]
    assert gate._self_check() == []


async def served_once(gate: DeploymentGate, team: str) -> None:
    """A request of ``team`` queues, and gets the slot its holder gives back."""
    request = asyncio.ensure_future(gate.acquire(team, 1.0, HI))
    await settle(2)
    gate.release()
    await request


async def test_idle_teams_past_64_are_forgotten_but_a_waiting_team_never_is() -> None:
    gate = DeploymentGate("dep", 1, max_queue=1000, max_wait_s=LONG)
    await gate.acquire("holder", 1.0, HI)
    await served_once(gate, "busy")  # the class's turn 0; busy's next turn is 1
    for i in range(62):
        await served_once(gate, f"idle-{i}")  # served in turn 0 too: next turn 1
    await served_once(gate, "busy")  # turn 1: every idle team's turn has passed
    waiting = asyncio.ensure_future(gate.acquire("waiting", 1.0, HI))  # the 64th team, waiting
    await settle(2)
    newcomer = asyncio.ensure_future(gate.acquire("newcomer", 1.0, HI))  # the 65th: a pruning
    await settle(2)
    again = asyncio.ensure_future(gate.acquire("waiting", 1.0, HI))  # the same team, still known
    await settle(2)
    assert gate.waiting == 3 and gate._self_check() == []
    for _ in range(3):
        gate.release()
        await settle()
    await asyncio.gather(waiting, newcomer, again)
    assert gate._self_check() == []
    for i in range(70):  # and the class goes on taking new teams
        await served_once(gate, f"later-{i}")
    assert gate._self_check() == []


async def test_teams_that_only_ever_left_are_all_forgotten_and_the_next_one_queues() -> None:
    gate = DeploymentGate("dep", 1, max_queue=1000, max_wait_s=LONG)
    await gate.acquire("holder", 1.0, HI)
    for i in range(64):
        gone = asyncio.ensure_future(gate.acquire(f"gone-{i}", 1.0, HI))
        await settle(2)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
    newcomer = asyncio.ensure_future(gate.acquire("newcomer", 1.0, HI))  # the 65th: none is kept
    await settle(2)
    assert gate.waiting == 1 and gate._self_check() == []
    gate.release()
    await newcomer
    assert (gate.in_flight, gate.waiting) == (1, 0)


async def test_a_class_with_no_wait_refuses_at_once_without_queueing() -> None:
    gate = DeploymentGate("dep", 1, max_queue=10, max_wait_s={HI: 0.0, LO: 60.0})
    await gate.acquire("holder", 1.0, HI)
    request = gate.acquire("t", 1.0, HI)
    with pytest.raises(QueueRejected) as info:
        request.send(None)  # raises on its first step: it never suspends in the queue
    assert info.value.reason == "wait_exceeded"
    assert gate.waiting == 0 and gate.stats().rejected == {"queue_full": 0, "wait_exceeded": 1}


async def test_bad_calls_and_settings_say_what_is_wrong() -> None:
    gate = DeploymentGate("dep", 1, max_queue=10, max_wait_s=LONG)
    with pytest.raises(RuntimeError) as unmatched:
        gate.release()
    assert str(unmatched.value) == "release() without a matching acquire() on 'dep'"
    with pytest.raises(ValueError) as negative:
        gate.set_capacity(-1)
    assert str(negative.value) == "capacity must be >= 0"
    await gate.acquire("holder", 1.0, HI)
    with pytest.raises(ValueError) as weight:
        await gate.acquire("t", 0.0, HI)
    assert str(weight.value) == "team weight must be a positive number, got 0.0"
    with pytest.raises(ValueError) as missing:
        DeploymentGate("dep", 1, max_queue=0, max_wait_s={})
    assert str(missing.value) == "max_wait_s has no entry for INTERACTIVE, BACKGROUND"


def test_priorities_that_are_not_0_to_n_minus_1_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    gapped = enum.IntEnum("Gapped", {"INTERACTIVE": 0, "BACKGROUND": 2})
    monkeypatch.setattr(fair_queue, "Priority", gapped)
    with pytest.raises(ValueError) as info:
        DeploymentGate("dep", 1, max_queue=0, max_wait_s=dict.fromkeys(gapped, 1.0))
    assert str(info.value) == "Priority values must be 0..n-1"
