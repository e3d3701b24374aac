"""Every background task of a process starts here: named, tracked, restarted, drained.

A task that crashes is logged with its traceback and restarted after a
backoff (1 s doubling to 30 s), so one bad refresh never silently stops
snapshot updates. ``stop()`` cancels everything and waits, for shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("inferenceops.supervisor")


class Supervisor:
    def __init__(self, *, backoff_s: float = 1.0, max_backoff_s: float = 30.0) -> None:
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.crashes: dict[str, int] = {}

    def spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already running")
        self._tasks[name] = asyncio.create_task(self._keep_running(name, run), name=name)

    async def _keep_running(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        backoff = self._backoff_s
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # the supervisor is where a task's failure is logged and counted
                self.crashes[name] = self.crashes.get(name, 0) + 1
                log.exception("background task %s crashed; restarting in %.0fs", name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)

    async def stop(self) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
