"""The deployment gate on a clock the test moves: waits, the service pace, expiry behind a grant.

The gate takes all its timing from the running loop, so on ``ManualClockLoop``
every wait is exact and nothing sleeps. Pinned here (mutmut found them loose,
``make mutation``): each queued request gets back the seconds it waited and the
statistics add them up; the retry hint follows the smoothed time between
completions (each new gap moves it a tenth of the way); and a waiter whose
team was passed over for another team's request still expires on time.
"""

from __future__ import annotations

import asyncio

import pytest
from tests.support.manual_clock import advance, run_on_manual_clock, turns

from inferenceops.admission.fair_queue import DeploymentGate, QueueRejected
from inferenceops.platform.priority import Priority

HI, LO = Priority.INTERACTIVE, Priority.BACKGROUND


def test_each_queued_request_gets_the_seconds_it_waited_and_the_stats_add_them_up() -> None:
    async def main() -> None:
        gate = DeploymentGate("dep", 1, max_queue=10, max_wait_s={HI: 60.0, LO: 60.0})
        assert await gate.acquire("holder", 1.0, HI) == 0.0
        first = asyncio.ensure_future(gate.acquire("a", 1.0, HI))
        second = asyncio.ensure_future(gate.acquire("b", 1.0, HI))
        await advance(2.0)
        gate.release()
        await advance(3.0)
        gate.release()
        assert (await first, await second) == (2.0, 5.0)
        stats = gate.stats()
        assert stats.admitted == {HI: 3, LO: 0}
        assert stats.admitted_after_wait == {HI: 2, LO: 0}
        assert stats.wait_seconds_total == {HI: 7.0, LO: 0.0}

    run_on_manual_clock(main)


def test_the_retry_hint_follows_the_smoothed_time_between_completions() -> None:
    async def main() -> None:
        gate = DeploymentGate("dep", 1, max_queue=3, max_wait_s={HI: 60.0, LO: 60.0})
        await gate.acquire("holder", 1.0, HI)
        busy = [asyncio.ensure_future(gate.acquire(f"t{i}", 1.0, HI)) for i in range(3)]
        await advance(1.0)
        gate.release()  # the first completion of a busy period: no pace yet
        await advance(1.0)
        gate.release()  # 1 s after the previous one: the pace is 1 s
        await advance(2.0)
        gate.release()  # 2 s: the pace moves a tenth of the way there, to 1.1 s
        await asyncio.gather(*busy)
        queued = [asyncio.ensure_future(gate.acquire(f"u{i}", 1.0, HI)) for i in range(3)]
        await turns()
        with pytest.raises(QueueRejected) as info:
            await gate.acquire("late", 1.0, HI)
        # Three ahead of it, and itself: four completions at 1.1 s each.
        assert info.value.reason == "queue_full"
        assert info.value.retry_after_s == pytest.approx(4.4)
        assert info.value.message == ("deployment 'dep' is at capacity and its queue is full "
                                      "(3 waiting); retry in 4.4 s")
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)

    run_on_manual_clock(main)


def test_a_waiter_passed_over_for_another_team_still_expires_on_time() -> None:
    async def main() -> None:
        gate = DeploymentGate("dep", 1, max_queue=10, max_wait_s={HI: 1.0, LO: 60.0})
        await gate.acquire("holder", 1.0, HI)
        a1 = asyncio.ensure_future(gate.acquire("a", 1.0, HI))  # due at 1001
        await turns()
        gate.release()  # a1 gets the slot: team a's next turn is one turn later
        assert await a1 == 0.0
        await advance(0.5)
        a2 = asyncio.ensure_future(gate.acquire("a", 1.0, HI))  # due at 1001.5
        b1 = asyncio.ensure_future(gate.acquire("b", 1.0, HI))  # due at 1001.5, but b's turn is now
        await advance(0.5)  # the expiry timer (armed for a1) finds nobody due yet
        gate.release()  # a1 is done: b1 goes first, a2 keeps waiting
        assert await b1 == 0.5
        await advance(0.5)
        assert a2.done()
        with pytest.raises(QueueRejected) as info:
            await a2
        assert info.value.reason == "wait_exceeded"
        assert info.value.message == "deployment 'dep' had no free slot within 1 s; retry in 1.0 s"
        assert (gate.in_flight, gate.waiting) == (1, 0) and gate._self_check() == []

    run_on_manual_clock(main)
