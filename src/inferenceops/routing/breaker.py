"""One replica's circuit breaker: the state machine, and the only code that changes its state.

::

                 consecutive failures >= failures_to_open,
                 or suspected hung (``suspect``)
      ┌────────┐ ───────────────────────────────────────────► ┌──────┐
      │ CLOSED │                                               │ OPEN │ ◄─┐
      └────────┘ ◄──────────┐                                  └──────┘   │
        ▲  weight ramps     │ the trial (or a probe)               │      │ the trial fails,
        │  0.1 → 1 over     │ succeeds: slow start                 │      │ a probe fails,
        │  slow_start_s     │                                      │      │ hung: open_for
        │              ┌───────────┐   open_for elapsed, or       │      │ doubles (≤ max_open_s)
        │              │ HALF_OPEN │ ◄────────────────────────────┘      │
        │              └───────────┘   a probe succeeds                   │
        │                    └────────────────────────────────────────────┘
        └── success, busy (429), probe ok: failures reset to 0

* **CLOSED**: requests flow. Failures (connect refused or timed out, an engine 5xx,
  a first-byte timeout, an answer that is not one, a stream that broke off) are
  counted; any success resets the count. ``busy`` (an engine's 429) is neither:
  the engine is alive, just full — it never trips the breaker.
* **OPEN**: no request is sent. After ``open_for`` (``open_s`` at first, doubled by
  each failed trial up to ``max_open_s``) the breaker turns HALF_OPEN; a readiness
  probe that succeeds turns it HALF_OPEN at once.
* **HALF_OPEN**: exactly **one** request at a time may try (``begin`` claims the
  trial). Its success — or a probe's — closes the breaker; its failure reopens it.
  A trial that ends with no verdict (the caller left) frees the slot (``abandon``).
* After closing, the replica's routing ``weight`` ramps linearly from
  ``slow_start_floor`` to 1 over ``slow_start_s`` (slow start): a replica that has
  just come back gets a share of new work that grows, not the whole backlog at once.

Time is given by the caller (``now``, monotonic seconds): no clock, no I/O, no
randomness here, so the machine is tested over any sequence of events.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.IntEnum):
    """Also the value of ``inferenceops_replica_breaker_state`` on /metrics."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures_to_open: int = 3
    open_s: float = 1.0
    max_open_s: float = 30.0
    slow_start_s: float = 10.0
    slow_start_floor: float = 0.1

    def __post_init__(self) -> None:
        if self.failures_to_open < 1:
            raise ValueError("failures_to_open must be at least 1")
        if not 0 < self.open_s <= self.max_open_s:
            raise ValueError("open_s must be positive and at most max_open_s")
        if self.slow_start_s < 0 or not 0 < self.slow_start_floor <= 1:
            raise ValueError("slow_start_s must be >= 0 and slow_start_floor in (0, 1]")


class Breaker:
    """The breaker of one replica (see the module docstring for the diagram)."""

    __slots__ = ("policy", "_state", "failures", "_opened_at", "open_for", "trial", "_ramp_from",
                 "reason", "opens")

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self._state = State.CLOSED
        self.failures = 0  # consecutive, while CLOSED
        self._opened_at = 0.0
        self.open_for = policy.open_s
        self.trial = False  # a HALF_OPEN trial is in flight
        self._ramp_from: float | None = None  # slow start began here (None: full weight)
        self.reason: str | None = None  # why it last opened
        self.opens = 0  # times it opened, for /metrics

    # ---- reading ------------------------------------------------------------------------------

    def state(self, now: float) -> State:
        """The state at ``now`` (an OPEN breaker whose time is up reads, and becomes, HALF_OPEN)."""
        if self._state is State.OPEN and now >= self._opened_at + self.open_for:
            self._state = State.HALF_OPEN
            self.trial = False
        return self._state

    def admits(self, now: float) -> bool:
        """Whether a new request may be sent now (without claiming anything)."""
        state = self.state(now)
        return state is State.CLOSED or (state is State.HALF_OPEN and not self.trial)

    def weight(self, now: float) -> float:
        """The share of new work it should get, 0..1: 0 unless CLOSED; ramps during slow start."""
        if self.state(now) is not State.CLOSED:
            return 0.0
        if self._ramp_from is None:
            return 1.0
        elapsed = now - self._ramp_from
        span = self.policy.slow_start_s
        if span <= 0 or elapsed >= span:
            self._ramp_from = None
            return 1.0
        floor = self.policy.slow_start_floor
        return floor + (1.0 - floor) * max(elapsed, 0.0) / span

    def retry_in(self, now: float) -> float:
        """Seconds until it admits a request again (0 if it does now)."""
        if self.admits(now):
            return 0.0
        if self._state is State.OPEN:
            return max(0.0, self._opened_at + self.open_for - now)
        return self.policy.open_s  # HALF_OPEN with its trial in flight: about one trial's time

    # ---- events -------------------------------------------------------------------------------

    def begin(self, now: float) -> bool:
        """A request is about to be sent: True if allowed (in HALF_OPEN it claims the trial)."""
        state = self.state(now)
        if state is State.CLOSED:
            return True
        if state is State.HALF_OPEN and not self.trial:
            self.trial = True
            return True
        return False

    def succeeded(self, now: float) -> None:
        """The engine answered (any answer that is one, a 4xx included)."""
        state = self.state(now)
        if state is State.CLOSED:
            self.failures = 0
        elif state is State.HALF_OPEN:
            self._close(now)
        # OPEN: a request sent before it opened came back fine; the trial decides.

    def busy(self, now: float) -> None:
        """The engine said 429: alive but full. Never a failure; a trial that gets it passed."""
        self.succeeded(now)

    def failed(self, now: float, reason: str) -> None:
        """Connect failure, 5xx, timeout, broken stream, not an answer."""
        state = self.state(now)
        if state is State.CLOSED:
            self.failures += 1
            if self.failures >= self.policy.failures_to_open:
                self._open(now, reason, self.policy.open_s)
        elif state is State.HALF_OPEN:
            self._open(now, reason, min(self.open_for * 2, self.policy.max_open_s))

    def suspect(self, now: float, reason: str) -> None:
        """Strong evidence it is not working (e.g. every stream stalled): open now."""
        state = self.state(now)
        if state is State.CLOSED:
            self._open(now, reason, self.policy.open_s)
        elif state is State.HALF_OPEN:
            self._open(now, reason, min(self.open_for * 2, self.policy.max_open_s))

    def abandon(self) -> None:
        """The trial ended without a verdict (the caller left): another may try."""
        self.trial = False

    def probe_ok(self, now: float) -> None:
        """A readiness probe succeeded: OPEN → HALF_OPEN, HALF_OPEN → CLOSED."""
        state = self.state(now)
        if state is State.OPEN:
            self._state = State.HALF_OPEN
            self.trial = False
        elif state is State.HALF_OPEN:
            self._close(now)
        else:
            self.failures = 0

    def probe_failed(self, now: float, reason: str) -> None:
        """A readiness probe failed: counts as a failure while CLOSED, reopens a HALF_OPEN one."""
        state = self.state(now)
        if state is not State.OPEN:
            self.failed(now, reason)

    # ---- transitions --------------------------------------------------------------------------

    def _open(self, now: float, reason: str, open_for: float) -> None:
        self._state = State.OPEN
        self._opened_at = now
        self.open_for = open_for
        self.trial = False
        self.failures = 0
        self._ramp_from = None
        self.reason = reason
        self.opens += 1

    def _close(self, now: float) -> None:
        self._state = State.CLOSED
        self.trial = False
        self.failures = 0
        self.open_for = self.policy.open_s
        self._ramp_from = now if self.policy.slow_start_s > 0 else None
