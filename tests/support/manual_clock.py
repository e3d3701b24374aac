"""An event loop whose clock moves only when the test moves it.

Code that takes all its timing from the running loop (``loop.time()``,
``loop.call_at``), such as the deployment gate, can then be tested to the exact
second without sleeping: ``advance`` moves the clock and lets the loop run what
became due. Awaiting anything that only a timer would complete hangs, since time
never passes by itself: drive such code with ``advance`` and ``turns``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class ManualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 1000.0) -> None:
        super().__init__()
        self.now = start

    def time(self) -> float:
        return self.now


async def turns(n: int = 10) -> None:
    """Let every ready callback and task run (grants, expiries and cleanups are a few hops)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def advance(seconds: float) -> None:
    """Let what is ready run at the current time, then move the clock and run what became due."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ManualClockLoop)
    await turns()
    loop.now += seconds
    await turns()


def run_on_manual_clock(main: Callable[[], Coroutine[Any, Any, T]], start: float = 1000.0) -> T:
    loop = ManualClockLoop(start)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
