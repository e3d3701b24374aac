"""Deadlines for many in-flight exchanges on one timer, instead of one timer each.

``asyncio.timeout`` arms a timer when a request starts and cancels it when the
answer is in: measured here, ~20 µs a request under uvloop, for deadlines (an
engine's ``first_byte_s``: tens of seconds) that almost never pass. ``Deadlines``
keeps each exchange's deadline in a dict; one timer, ticking every ``tick_s`` while
any is held, cancels the tasks whose deadline has passed. A deadline so fires at
most ``tick_s`` late, and a request pays a dict insert and delete.

Use: ``with deadlines.at(when): await …`` around the awaits to bound, in a task. On
expiry the task is cancelled and the block raises ``TimeoutError``, as under
``asyncio.timeout``; a cancellation from anyone else (the caller left) stays a
``CancelledError``. The context is synchronous: between the block's last await and
its exit nothing else runs, so a tick can only cancel a task waiting inside it.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

TICK_S = 0.05


class Deadline:
    """One watched block (``Deadlines.at``)."""

    __slots__ = ("_owner", "_task", "when", "expired")

    def __init__(self, owner: Deadlines, task: asyncio.Task[object], when: float) -> None:
        self._owner = owner
        self._task = task
        self.when = when
        self.expired = False

    def __enter__(self) -> Deadline:
        self._owner._watch(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._owner._entries.pop(self, None)
        if self.expired and kind is asyncio.CancelledError and self._task.uncancel() == 0:
            raise TimeoutError from exc

    def expire(self) -> None:
        self.expired = True
        self._task.cancel()


class Deadlines:
    """The deadlines of one event loop's in-flight exchanges (see the module doc)."""

    __slots__ = ("_entries", "_handle", "_tick_s")

    def __init__(self, tick_s: float = TICK_S) -> None:
        self._entries: dict[Deadline, float] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._tick_s = tick_s

    def at(self, when: float) -> Deadline:
        """A block bounded by ``when`` (the running loop's ``time()``), for the current task."""
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop
            task = None
        if task is None:
            raise RuntimeError("Deadlines.at must be used inside a task")
        return Deadline(self, task, when)

    def __len__(self) -> int:
        return len(self._entries)

    def _watch(self, deadline: Deadline) -> None:
        self._entries[deadline] = deadline.when
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self._tick_s, self._sweep)

    def _sweep(self) -> None:
        self._handle = None
        entries = self._entries
        if not entries:
            return
        now = asyncio.get_running_loop().time()
        for deadline, when in list(entries.items()):
            if when <= now:
                del entries[deadline]
                deadline.expire()
        if entries:
            self._handle = asyncio.get_running_loop().call_later(self._tick_s, self._sweep)
