"""Admission to one deployment: a bounded waiting room in front of its capacity.

A deployment takes at most ``capacity`` requests in flight from this gateway
process. Past that a request waits here rather than failing at once, and only
a full room or an exceeded wait refuses it (``QueueRejected``; the gateway
turns it into a 429 with Retry-After). Who gets the next free slot:

1. **Strict priority between classes** (``Priority``, lower value first): a
   background request never overtakes an interactive one.
2. **Weighted fair queueing between teams inside a class**, by start-time fair
   queueing kept per team instead of per request. A team with a backlog sits
   in the class's heap keyed by its head's start tag; serving its head sets
   the class's virtual time to that tag and moves the team's tag on by
   ``1 / weight``. A team that becomes backlogged starts at
   ``max(its last finish tag, virtual time)``: it may not bank credit while
   idle, and may not jump the line by leaving and coming back. Equal tags go
   to the team that entered the heap first, so equal teams alternate.
3. **FIFO inside a team.**

Picking is O(log teams): only backlogged teams are in the heap. Waiters that
leave (cancelled, expired) are marked and skipped lazily; a team whose last
waiter leaves is dropped from the heap by bumping its generation, and stale
heap entries are compacted once they outnumber the live ones.

Deadlines cost no timer per waiter: a class's maximum wait is fixed, so its
waiters' deadlines are in arrival order and one ``loop.call_at`` per class,
re-armed for the oldest live waiter, expires them in batches.

Must not: do I/O, start threads, keep module state, or read the wall clock
(all timing comes from the running loop). State is per process; N gateway
replicas each run their own gate.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from inferenceops.platform.priority import Priority

Reason = Literal["queue_full", "wait_exceeded"]

UNKNOWN_RETRY_S = 1.0  # no service rate measured yet
MIN_RETRY_S = 0.1
MAX_RETRY_S = 60.0
_EWMA_ALPHA = 0.1  # weight of the newest completion interval
_TIMER_SLACK_S = 0.001  # loops may fire call_at timers up to a tick early
_WAITING, _GRANTED, _EXPIRED, _CANCELLED = range(4)


class QueueRejected(Exception):
    """The deployment is saturated and this request may not wait (any longer); retry later."""

    def __init__(self, reason: Reason, deployment: str, retry_after_s: float, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.deployment = deployment
        self.retry_after_s = retry_after_s
        self.message = message


def retry_after_estimate(ahead: int, interval_s: float | None) -> float:
    """Seconds until ``ahead`` queued requests and this one would be served at the observed pace.

    ``interval_s`` is the smoothed time between completions while requests were
    waiting (the deployment's service rate as this gate sees it); ``None`` when
    nothing has been observed yet, when one second is the honest guess.
    """
    if interval_s is None:
        return UNKNOWN_RETRY_S
    return min(MAX_RETRY_S, max(MIN_RETRY_S, (ahead + 1) * interval_s))


@dataclass(frozen=True, slots=True)
class GateStats:
    """Counters for metrics; totals since the gate was built, except the two gauges."""

    deployment: str
    capacity: int
    in_flight: int
    waiting: Mapping[Priority, int]
    admitted: Mapping[Priority, int]  # fast path and after a wait (incl. grants the client left)
    admitted_after_wait: Mapping[Priority, int]
    wait_seconds_total: Mapping[Priority, float]  # of admitted requests only
    rejected: Mapping[Reason, int]
    cancelled_while_waiting: int


class _Waiter:
    __slots__ = ("cls", "team", "weight", "fut", "enqueued", "deadline", "state", "waited")

    def __init__(self, cls: _Class, team: _Team, weight: float, fut: asyncio.Future[bool],
                 now: float) -> None:
        self.cls, self.team, self.weight, self.fut = cls, team, weight, fut
        self.enqueued, self.deadline = now, now + cls.max_wait
        self.state = _WAITING
        self.waited = 0.0


class _Team:
    __slots__ = ("queue", "live", "finish", "gen")

    def __init__(self) -> None:
        self.queue: deque[_Waiter] = deque()  # FIFO; may hold departed waiters behind a live head
        self.live = 0  # waiters still waiting
        self.finish = 0.0  # start tag of this team's next request
        self.gen = 0  # heap entries of older generations are stale


class _Class:
    __slots__ = ("priority", "max_wait", "teams", "heap", "stale", "arrivals", "live", "vtime",
                 "timer", "prune_at")

    def __init__(self, priority: Priority, max_wait: float) -> None:
        self.priority, self.max_wait = priority, max_wait
        self.teams: dict[str, _Team] = {}
        self.heap: list[tuple[float, int, int, _Team]] = []  # (start tag, entry seq, gen, team)
        self.stale = 0
        self.arrivals: deque[_Waiter] = deque()  # arrival order == deadline order
        self.live = 0
        self.vtime = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.prune_at = 64


class DeploymentGate:
    """At most ``capacity`` in flight; up to ``max_queue`` more wait, by priority then fair share.

    Pair every successful ``acquire`` with exactly one ``release`` (``try``/``finally``
    right after the ``await``: there is no suspension point in between).
    """

    def __init__(self, name: str, capacity: int, *, max_queue: int,
                 max_wait_s: Mapping[Priority, float]) -> None:
        if capacity < 0 or max_queue < 0:
            raise ValueError("capacity and max_queue must be >= 0")
        order = sorted(Priority)
        if [int(p) for p in order] != list(range(len(order))):
            raise ValueError("Priority values must be 0..n-1")
        missing = [p.name for p in order if p not in max_wait_s]
        if missing:
            raise ValueError(f"max_wait_s has no entry for {', '.join(missing)}")
        self.name = name
        self._capacity = capacity
        self._max_queue = max_queue
        self._classes = [_Class(p, float(max_wait_s[p])) for p in order]
        self._in_flight = 0
        self._waiting = 0
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_done: float | None = None
        self._interval: float | None = None
        n = len(order)
        self._admitted = [0] * n
        self._admitted_after_wait = [0] * n
        self._wait_s = [0.0] * n
        self._rejected: dict[Reason, int] = {"queue_full": 0, "wait_exceeded": 0}
        self._cancelled = 0

    # -- the two hot calls ------------------------------------------------------------------

    async def acquire(self, team: str, weight: float, priority: Priority) -> float:
        """Take a slot, waiting if need be; returns the seconds waited. Raises QueueRejected."""
        # A free slot implies an empty queue (slots are handed to waiters on release), so
        # this is also "nobody of the same or a higher priority is waiting".
        if self._in_flight < self._capacity and not self._waiting:
            self._in_flight += 1
            self._admitted[priority] += 1
            return 0.0
        return await self._wait(team, weight, priority)

    def release(self) -> None:
        """Give the slot back; the next waiter by policy gets it without a free-slot gap."""
        if self._in_flight <= 0:
            raise RuntimeError(f"release() without a matching acquire() on {self.name!r}")
        self._in_flight -= 1
        if self._waiting:
            self._dispatch(self._note_completion())

    # -- configuration and read-only state -------------------------------------------------

    def set_capacity(self, capacity: int) -> None:
        """Growing admits waiters now; shrinking admits nobody until in-flight work drains below it."""
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self._capacity = capacity
        if self._waiting:
            self._dispatch()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return self._waiting

    def waiting_by_priority(self) -> dict[Priority, int]:
        return {c.priority: c.live for c in self._classes}

    def stats(self) -> GateStats:
        by_p = [c.priority for c in self._classes]
        return GateStats(
            deployment=self.name, capacity=self._capacity, in_flight=self._in_flight,
            waiting=self.waiting_by_priority(),
            admitted=dict(zip(by_p, self._admitted, strict=True)),
            admitted_after_wait=dict(zip(by_p, self._admitted_after_wait, strict=True)),
            wait_seconds_total=dict(zip(by_p, self._wait_s, strict=True)),
            rejected=dict(self._rejected), cancelled_while_waiting=self._cancelled)

    # -- waiting ---------------------------------------------------------------------------

    async def _wait(self, team_name: str, weight: float, priority: Priority) -> float:
        cls = self._classes[priority]
        if self._waiting >= self._max_queue or cls.max_wait <= 0:
            reason: Reason = "queue_full" if self._waiting >= self._max_queue else "wait_exceeded"
            self._rejected[reason] += 1
            raise self._rejection(reason, priority)
        if not (weight > 0 and math.isfinite(weight)):
            raise ValueError(f"team weight must be a positive number, got {weight!r}")
        loop = self._loop = asyncio.get_running_loop()
        if not self._waiting:
            self._last_done = None  # a new busy period: the idle gap is not a service interval
        w = _Waiter(cls, self._team(cls, team_name), weight, loop.create_future(), loop.time())
        team = w.team
        if not team.live:
            self._seq += 1
            heapq.heappush(cls.heap, (max(team.finish, cls.vtime), self._seq, team.gen, team))
        team.queue.append(w)
        team.live += 1
        cls.arrivals.append(w)
        cls.live += 1
        self._waiting += 1
        if cls.timer is None:
            cls.timer = loop.call_at(w.deadline, self._expire, cls)
        if self._in_flight < self._capacity:  # not reachable while the invariant holds; cheap insurance
            self._dispatch()
        try:
            granted = await w.fut
        except BaseException:  # cancelled (client gone) or closed: never keep a slot or a place
            if w.state == _GRANTED:
                self._in_flight -= 1  # granted, but nobody will use it: pass it on
                self._dispatch()
            else:
                self._leave(w, _CANCELLED)
            raise
        if not granted:
            raise self._rejection("wait_exceeded", priority)
        return w.waited

    def _team(self, cls: _Class, name: str) -> _Team:
        team = cls.teams.get(name)
        if team is None:
            if len(cls.teams) >= cls.prune_at:
                # An idle team whose tag the virtual time has passed is indistinguishable from a new one.
                cls.teams = {k: t for k, t in cls.teams.items() if t.live or t.finish > cls.vtime}
                cls.prune_at = max(64, 2 * len(cls.teams))
            team = cls.teams[name] = _Team()
        return team

    def _dispatch(self, now: float | None = None) -> None:
        while self._in_flight < self._capacity and self._waiting:
            w = self._next()
            if w is None:
                return
            if now is None:
                now = self._loop.time()  # type: ignore[union-attr]  # set by the first waiter
            w.waited = now - w.enqueued
            p = w.cls.priority
            self._admitted[p] += 1
            self._admitted_after_wait[p] += 1
            self._wait_s[p] += w.waited
            self._in_flight += 1
            w.fut.set_result(True)

    def _next(self) -> _Waiter | None:
        """Unlink and return the waiter the policy serves next (state GRANTED), or None."""
        for cls in self._classes:
            heap = cls.heap
            while cls.live:
                tag, _, gen, team = heap[0]
                if gen != team.gen:
                    heapq.heappop(heap)
                    cls.stale -= 1
                    continue
                w = team.queue[0]
                if w.state != _WAITING:
                    team.queue.popleft()
                    continue
                if w.fut.cancelled():  # its task was cancelled this tick and has not run its cleanup yet
                    self._leave(w, _CANCELLED)
                    continue
                team.queue.popleft()
                w.state = _GRANTED
                team.live -= 1
                cls.live -= 1
                self._waiting -= 1
                cls.vtime = tag
                team.finish = tag + 1.0 / w.weight
                if team.live:
                    self._seq += 1
                    heapq.heapreplace(heap, (team.finish, self._seq, gen, team))
                else:
                    heapq.heappop(heap)
                    team.gen += 1
                    team.queue.clear()
                arrivals = cls.arrivals
                while arrivals and arrivals[0].state != _WAITING:
                    arrivals.popleft()
                return w
        return None

    def _leave(self, w: _Waiter, state: int) -> None:
        """Take a waiting waiter out of every count; idempotent, so racing cleanups are harmless."""
        if w.state != _WAITING:
            return
        w.state = state
        team, cls = w.team, w.cls
        team.live -= 1
        cls.live -= 1
        self._waiting -= 1
        if state == _CANCELLED:
            self._cancelled += 1
        if not team.live:
            team.gen += 1  # its heap entry is now stale
            team.queue.clear()
            cls.stale += 1
            if cls.stale > 64 and 2 * cls.stale > len(cls.heap):
                cls.heap[:] = [e for e in cls.heap if e[2] == e[3].gen]  # in place: _next holds it
                heapq.heapify(cls.heap)
                cls.stale = 0

    def _expire(self, cls: _Class) -> None:
        cls.timer = None
        loop = self._loop
        assert loop is not None
        horizon = loop.time() + _TIMER_SLACK_S
        arrivals = cls.arrivals
        while arrivals:
            w = arrivals[0]
            if w.state == _WAITING:
                if w.deadline > horizon:
                    cls.timer = loop.call_at(w.deadline, self._expire, cls)
                    return
                if w.fut.cancelled():
                    self._leave(w, _CANCELLED)
                else:
                    self._leave(w, _EXPIRED)
                    self._rejected["wait_exceeded"] += 1
                    w.fut.set_result(False)
            arrivals.popleft()

    def _note_completion(self) -> float:
        """Feed the service-interval average from completions that found requests waiting."""
        now = self._loop.time()  # type: ignore[union-attr]  # waiters exist, so the loop is known
        if self._last_done is not None:
            gap = now - self._last_done
            self._interval = gap if self._interval is None else (
                self._interval + _EWMA_ALPHA * (gap - self._interval))
        self._last_done = now
        return now

    def _rejection(self, reason: Reason, priority: Priority) -> QueueRejected:
        ahead = sum(c.live for c in self._classes[: priority + 1])
        retry = retry_after_estimate(ahead, self._interval)
        if reason == "queue_full":
            text = (f"deployment {self.name!r} is at capacity and its queue is full "
                    f"({self._max_queue} waiting); retry in {retry:.1f} s")
        else:
            text = (f"deployment {self.name!r} had no free slot within "
                    f"{self._classes[priority].max_wait:g} s; retry in {retry:.1f} s")
        return QueueRejected(reason, self.name, retry, text)

    def _self_check(self) -> list[str]:
        """Recount everything from the structures (for tests): each entry is a broken invariant."""
        errors = []
        live = 0
        for cls in self._classes:
            teams = [t for t in cls.teams.values() if t.live]
            counted = sum(sum(w.state == _WAITING for w in t.queue) for t in teams)
            valid = [e for e in cls.heap if e[2] == e[3].gen]
            if counted != cls.live or sum(t.live for t in teams) != cls.live:
                errors.append(f"{cls.priority.name}: live {cls.live} != counted {counted}")
            if sorted(id(e[3]) for e in valid) != sorted(id(t) for t in teams):
                errors.append(f"{cls.priority.name}: heap entries do not match backlogged teams")
            if len(cls.heap) - len(valid) != cls.stale:
                errors.append(f"{cls.priority.name}: stale {cls.stale} != {len(cls.heap) - len(valid)}")
            live += cls.live
        if live != self._waiting:
            errors.append(f"waiting {self._waiting} != {live}")
        if self._waiting and self._in_flight < self._capacity:
            errors.append("a slot is free while requests wait")
        return errors
