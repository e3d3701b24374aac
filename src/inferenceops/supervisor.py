"""Every background task of a process starts here: named, ordered, restarted, drained.

A process (``inferenceops serve``'s workers, ``inferenceops worker``) has one
``Supervisor`` owning every ``Service`` — the snapshot feed, the outbox
writer, the Redis heartbeat, and as they arrive engine-metric scrapers, health
probes, rollups, batch executors:

* ``start()`` starts them **in the order they were added** — each one's
  ``start`` must finish (e.g. the first snapshot is built) before the next
  begins, and before the process says it is ready; a failing ``start`` fails
  the process's startup;
* then each one's ``run`` goes on in the background; a ``run`` that raises is
  logged with its traceback, counted (``crashes``) and restarted after a
  backoff (1 s doubling to 30 s), so one bad refresh never silently stops
  snapshot updates;
* ``stop()`` stops them **in reverse order**: a service's ``run`` is cancelled,
  then its ``stop`` (flush, close) gets its own deadline — the outbox writer
  flushes after everything that feeds it has stopped. A service that overruns
  its deadline is logged and abandoned so shutdown always finishes.

``spawn`` runs a bare coroutine function under the same restart policy, for
small tasks that have nothing to start or flush.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("inferenceops.supervisor")

DEFAULT_STOP_DEADLINE_S = 10.0


class Service(Protocol):
    """A long-lived part of a process."""

    @property
    def name(self) -> str: ...

    async def start(self) -> None:
        """Get ready (before the process serves); raising fails the process's startup."""
        ...

    async def run(self) -> None:
        """The background work; restarted on a crash. Returning means it is done."""
        ...

    async def stop(self) -> None:
        """After ``run`` is cancelled: flush and close (within the service's deadline)."""
        ...


@dataclass
class _Entry:
    service: Service
    stop_deadline_s: float
    task: asyncio.Task[None] | None = field(default=None)


class Supervisor:
    def __init__(self, *, backoff_s: float = 1.0, max_backoff_s: float = 30.0) -> None:
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._services: list[_Entry] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.crashes: dict[str, int] = {}
        self.started = False

    # ---- services -----------------------------------------------------------------------------

    def add(self, service: Service, *, stop_deadline_s: float = DEFAULT_STOP_DEADLINE_S) -> None:
        """Register ``service``; started after those added before it, stopped before them."""
        names = {e.service.name for e in self._services} | set(self._tasks)
        if service.name in names:
            raise ValueError(f"a service named {service.name!r} is already supervised")
        if self.started:
            raise RuntimeError(f"cannot add {service.name!r}: the supervisor has started")
        self._services.append(_Entry(service, stop_deadline_s))

    @property
    def names(self) -> tuple[str, ...]:
        """The services in start order."""
        return tuple(e.service.name for e in self._services)

    @property
    def services(self) -> tuple[Service, ...]:
        return tuple(e.service for e in self._services)

    async def start(self) -> None:
        """Start every service in order, each one's ``run`` in the background once it started."""
        self.started = True
        for entry in self._services:
            await entry.service.start()
            entry.task = asyncio.create_task(
                self._keep_running(entry.service.name, entry.service.run), name=entry.service.name)
            log.debug("service %s started", entry.service.name)

    async def stop(self) -> None:
        """Stop every service in reverse order, each within its deadline; then the bare tasks."""
        for entry in reversed(self._services):
            started = time.monotonic()
            if entry.task is not None:
                entry.task.cancel()
                await asyncio.gather(entry.task, return_exceptions=True)
                entry.task = None
            left = max(0.0, entry.stop_deadline_s - (time.monotonic() - started))
            try:
                async with asyncio.timeout(left):
                    await entry.service.stop()
            except TimeoutError:
                log.error("service %s did not stop within %gs; abandoned", entry.service.name,
                          entry.stop_deadline_s)
            except Exception:  # shutting down: say what failed, keep stopping the others
                log.exception("service %s failed while stopping", entry.service.name)
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- bare tasks ---------------------------------------------------------------------------

    def spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run ``run`` in the background under the restart policy (stopped by ``stop``)."""
        if name in self._tasks or name in {e.service.name for e in self._services}:
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
