"""Deadlines on one timer: a passed deadline is a TimeoutError, anyone else's cancellation stays
a cancellation, and the timer runs only while something is watched."""

from __future__ import annotations

import asyncio

import pytest

from inferenceops.engines.deadlines import Deadlines


async def test_a_block_past_its_deadline_raises_timeout_error_within_a_tick() -> None:
    deadlines = Deadlines(tick_s=0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError), deadlines.at(started + 0.03):
        await asyncio.sleep(10)
    assert 0.03 <= loop.time() - started < 1.0
    assert len(deadlines) == 0


async def test_a_block_that_finishes_in_time_is_untouched_and_forgotten() -> None:
    deadlines = Deadlines(tick_s=0.01)
    with deadlines.at(asyncio.get_running_loop().time() + 5):
        await asyncio.sleep(0.02)
    assert len(deadlines) == 0
    await asyncio.sleep(0.05)  # the timer stops once nothing is watched: no stray cancel
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines(tick_s=0.01)

    async def waits() -> None:
        with deadlines.at(asyncio.get_running_loop().time() + 5):
            await asyncio.sleep(10)

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(deadlines) == 0


async def test_many_blocks_share_the_timer_and_each_expires_on_its_own() -> None:
    deadlines = Deadlines(tick_s=0.01)
    now = asyncio.get_running_loop().time()

    async def one(after: float) -> str:
        try:
            with deadlines.at(now + after):
                await asyncio.sleep(0.2)
        except TimeoutError:
            return "timed out"
        return "done"

    results = await asyncio.gather(*(one(0.03) for _ in range(50)), *(one(5) for _ in range(50)))
    assert results == ["timed out"] * 50 + ["done"] * 50
    assert len(deadlines) == 0


def test_outside_a_task_it_says_so() -> None:
    with pytest.raises(RuntimeError, match="inside a task"):
        Deadlines().at(0.0)
