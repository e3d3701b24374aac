"""Background tasks: a crash is logged and the task restarted; stop drains everything."""

from __future__ import annotations

import asyncio

import pytest

from inferenceops.supervisor import Supervisor


async def test_crashing_task_is_restarted_and_stop_cancels_it(
        caplog: pytest.LogCaptureFixture) -> None:
    runs = 0
    forever = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("boom")
        await forever.wait()

    sup = Supervisor(backoff_s=0.001)
    sup.spawn("flaky", flaky)
    for _ in range(100):
        if runs >= 3:
            break
        await asyncio.sleep(0.01)
    assert runs == 3 and sup.crashes == {"flaky": 2}
    assert "background task flaky crashed" in caplog.text
    await sup.stop()


def test_names_are_unique() -> None:
    async def main() -> None:
        sup = Supervisor()
        sup.spawn("x", lambda: asyncio.sleep(1))
        with pytest.raises(ValueError):
            sup.spawn("x", lambda: asyncio.sleep(1))
        await sup.stop()

    asyncio.run(main())
