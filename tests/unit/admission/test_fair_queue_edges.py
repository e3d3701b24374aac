"""The deployment gate's expiry timer and its statistics (``admission.fair_queue``).

``test_fair_queue`` covers the policy; these pin what mutmut found loose (``make
mutation``): the expiry timer re-arming for waiters due later than the first
batch and for waiters that come after the queue emptied, a waiter whose client
left in the very tick its wait ran out (counted as cancelled, and the waiters
behind it still expire), and every field of ``GateStats``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from inferenceops.admission.fair_queue import DeploymentGate, GateStats, Priority, QueueRejected

HI, LO = Priority.INTERACTIVE, Priority.BACKGROUND


async def test_waiters_queued_later_still_expire_after_an_earlier_batch() -> None:
    gate = DeploymentGate("dep", 1, max_queue=10, max_wait_s={HI: 0.05, LO: 60.0})
    await gate.acquire("t", 1.0, HI)
    first = asyncio.ensure_future(gate.acquire("a", 1.0, HI))
    await asyncio.sleep(0.03)
    later = asyncio.ensure_future(gate.acquire("b", 1.0, HI))  # due 30 ms after the first
    for waiter in (first, later):
        with pytest.raises(QueueRejected) as info:
            await asyncio.wait_for(waiter, 2.0)
        assert info.value.reason == "wait_exceeded"
    assert (gate.in_flight, gate.waiting) == (1, 0)
    assert gate.stats().rejected == {"queue_full": 0, "wait_exceeded": 2}
    assert gate._self_check() == []


async def test_a_waiter_queued_after_the_queue_emptied_by_expiry_expires_too() -> None:
    gate = DeploymentGate("dep", 1, max_queue=10, max_wait_s={HI: 0.02, LO: 60.0})
    await gate.acquire("t", 1.0, HI)
    for round_ in range(3):  # each time the queue is empty again and the timer must be re-armed
        with pytest.raises(QueueRejected):
            await asyncio.wait_for(gate.acquire(f"team-{round_}", 1.0, HI), 2.0)
        assert gate.waiting == 0
    assert gate.stats().rejected == {"queue_full": 0, "wait_exceeded": 3}


async def test_a_client_leaving_in_the_tick_its_wait_runs_out_is_counted_as_cancelled() -> None:
    gate = DeploymentGate("dep", 1, max_queue=10, max_wait_s={HI: 0.05, LO: 60.0})
    await gate.acquire("t", 1.0, HI)
    loop = asyncio.get_running_loop()
    start = loop.time()
    leaving = asyncio.ensure_future(gate.acquire("a", 1.0, HI))  # due at start + 0.05 and a bit
    behind = asyncio.ensure_future(gate.acquire("b", 1.0, HI))
    # Stall the loop across the deadline, so that when it runs again the cancellation (due
    # first) and the gate's expiry timer run in the same turn: the timer finds a waiter whose
    # future is cancelled but whose task has not cleaned up yet.
    loop.call_at(start + 0.04, time.sleep, 0.05)
    loop.call_at(start + 0.045, leaving.cancel)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(leaving, 2.0)
    with pytest.raises(QueueRejected):
        await asyncio.wait_for(behind, 2.0)
    stats = gate.stats()
    assert stats.cancelled_while_waiting == 1
    assert stats.rejected == {"queue_full": 0, "wait_exceeded": 1}
    assert (gate.in_flight, gate.waiting) == (1, 0) and gate._self_check() == []


async def test_stats_report_every_count_of_the_gate() -> None:
    gate = DeploymentGate("llama", 1, max_queue=1, max_wait_s={HI: 60.0, LO: 60.0})
    assert await gate.acquire("t", 1.0, HI) == 0.0
    waiting = asyncio.ensure_future(gate.acquire("u", 1.0, LO))
    await asyncio.sleep(0)
    with pytest.raises(QueueRejected):
        await gate.acquire("v", 1.0, HI)  # one waits already: the queue is full
    assert gate.stats() == GateStats(
        deployment="llama", capacity=1, in_flight=1, waiting={HI: 0, LO: 1},
        admitted={HI: 1, LO: 0}, admitted_after_wait={HI: 0, LO: 0},
        wait_seconds_total={HI: 0.0, LO: 0.0}, rejected={"queue_full": 1, "wait_exceeded": 0},
        cancelled_while_waiting=0)
    gate.release()
    waited = await asyncio.wait_for(waiting, 2.0)
    stats = gate.stats()
    assert (stats.in_flight, stats.waiting) == (1, {HI: 0, LO: 0})
    assert stats.admitted == {HI: 1, LO: 1} and stats.admitted_after_wait == {HI: 0, LO: 1}
    assert stats.wait_seconds_total == {HI: 0.0, LO: waited}


def test_a_gate_with_no_capacity_is_valid_and_bad_settings_say_what_is_wrong() -> None:
    assert DeploymentGate("dep", 0, max_queue=0, max_wait_s={HI: 1.0, LO: 1.0}).capacity == 0
    for capacity, max_queue in ((-1, 0), (0, -1)):
        with pytest.raises(ValueError) as info:
            DeploymentGate("dep", capacity, max_queue=max_queue, max_wait_s={HI: 1.0, LO: 1.0})
        assert str(info.value) == "capacity and max_queue must be >= 0"
    with pytest.raises(ValueError) as missing:
        DeploymentGate("dep", 1, max_queue=0, max_wait_s={HI: 1.0})
    assert str(missing.value) == "max_wait_s has no entry for BACKGROUND"


async def test_a_team_new_to_the_queue_starts_at_the_current_turn_not_behind_it() -> None:
    gate = DeploymentGate("dep", 1, max_queue=10, max_wait_s={HI: 60.0, LO: 60.0})
    await gate.acquire("holder", 1.0, HI)
    order: list[str] = []

    async def one(label: str, team: str, weight: float) -> None:
        await gate.acquire(team, weight, HI)
        order.append(label)

    tasks = [asyncio.ensure_future(one(f"a{i}", "a", 3.0)) for i in range(1, 4)]
    await asyncio.sleep(0)
    gate.release()  # a1 gets the slot: team a's next turn is a third of a turn later
    await asyncio.sleep(0)
    tasks.append(asyncio.ensure_future(one("b1", "b", 1.0)))  # b arrives now, never served before
    await asyncio.sleep(0)
    for _ in range(4):
        gate.release()
        await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*tasks), 2.0)
    assert order == ["a1", "b1", "a2", "a3"]
