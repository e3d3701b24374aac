"""The admission ledger: the shared counters every limit and budget is checked against.

One request's admission is *one* atomic step over all the counters that apply
to it (key, team, model, team×model limits; team and key budgets): either
every check passes and every reservation is taken, or nothing changes and the
first failing check is reported. Completion settles the reservations to what
was actually used; a request that never reached an engine releases them.
There is no check-then-increment anywhere, so concurrent requests cannot slip
past a limit, and with the Redis ledger N gateway replicas share one set of
counters instead of allowing N times the limit.

Counters and their exact semantics (identical in every ledger):

* ``REQUESTS`` / ``TOKENS`` — a sliding window (``window_s``, 60 s for per-minute
  limits) of 60 time slots of ``window_s / 60`` (1 s): a slot holds the sum of
  the amounts admitted in it and leaves the window once its newest admission
  is ``window_s`` old. A request is admitted only if the amounts in the window
  plus its own stay <= ``limit``. An amount thus counts for at least
  ``window_s`` and less than ``window_s + window_s / 60`` after its admission,
  so *in any window of ``window_s`` seconds no more than ``limit`` is
  admitted* — exact, with no bucket burst; the slots cost only up to one slot
  of extra retention (slightly conservative), and bound a counter's memory to
  61 slots whatever the request rate. TOKENS reserve ``prompt tokens +
  max_tokens`` at admission and are settled to the actual token count in the
  admission's slot; a release takes the reservation out of it (for REQUESTS
  too). Neither changes anything once that slot has left the window.
* ``CONCURRENCY`` — requests in flight; each holds a leased slot until it
  settles or is released. A lease not settled within ``lease_s`` expires and
  frees its slot. A shared ledger also ties each lease to the live process that
  took it: once that process's heartbeat is gone (a crashed gateway), its leases
  are freed within seconds, long before ``lease_s`` (``instance.py``).
* ``BUDGET`` — money for one period, in integer nano-units of the currency
  (1e-9; exact, no float drift). Admission reserves the request's maximum
  cost (``spent + reserved + amount <= limit``, hard budgets only; soft budgets
  always admit and report the overrun); settlement moves the actual cost to
  ``spent`` and drops the reservation. Reservations are leased like slots.

Time is the ledger's own clock (the Redis server's ``TIME`` for Redis), so
replicas with skewed clocks still agree.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol

from inferenceops.values import immutable


class CheckKind(enum.Enum):
    REQUESTS = "requests"
    TOKENS = "tokens"
    CONCURRENCY = "concurrency"
    BUDGET = "budget"


@immutable
class Check:
    """One counter a request must fit in.

    ``counter`` names the counter (stable across replicas, e.g.
    ``"tpm:team:t_1"`` or ``"budget:key:k_9:2026-11"``); ``limit`` and
    ``amount`` are in the counter's unit (requests, tokens, slots = 1, nano-units).
    ``label`` is the human name used in errors ("tokens per minute of team 'ml'").
    ``ttl_s`` (budgets) is how long the counter must outlive its last use,
    e.g. until the end of its period plus a margin; None = forever.
    """

    kind: CheckKind
    counter: str
    limit: int
    amount: int
    label: str
    window_s: float = 60.0
    hard: bool = True
    ttl_s: float | None = None


@immutable
class CounterState:
    """A counter after admission, for ``x-ratelimit-*`` headers and ``/v1/quota``.

    ``used`` includes this request; ``reset_s`` is the time until the counter is
    back to its initial state (window counters: the newest non-zero slot leaves the window).
    """

    limit: int
    used: int
    reset_s: float

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@immutable
class Admitted:
    """Every check passed. ``states`` is parallel to the checks; ``over_soft`` lists
    the indexes of soft budgets this request took past their limit."""

    ticket: str
    states: tuple[CounterState, ...]
    over_soft: tuple[int, ...] = ()


@immutable
class Refused:
    """Check ``index`` failed; nothing was reserved.

    ``retry_after_s`` is when the request would fit if nothing else arrived, or
    None when it can never fit (its amount alone exceeds the limit, or a budget
    for the rest of its period).
    """

    index: int
    retry_after_s: float | None
    state: CounterState


class LedgerUnavailable(Exception):
    """The shared ledger cannot be reached; the caller applies the fail-open/closed policy."""


class HeartbeatLost(LedgerUnavailable):
    """This process's instance is not (or may no longer be) live in the shared ledger.

    Its leases may already have been freed by other replicas, so new ones would not be
    safe either; admissions that take leases are refused until a heartbeat gets through
    again (``instance.py``). A ``LedgerUnavailable``, so the same fail-open/closed policy applies.
    """


class Ledger(Protocol):
    async def admit(self, request_id: str, checks: Sequence[Check], lease_s: float) -> Admitted | Refused:
        """Check and reserve every counter atomically (one round trip)."""
        ...

    async def settle(self, request_id: str, checks: Sequence[Check], tokens: int, cost: int) -> None:
        """The request ended having used ``tokens`` tokens costing ``cost`` nano-units.

        REQUESTS amounts stay; TOKENS amounts become ``tokens``; CONCURRENCY slots
        are freed; BUDGET reservations are dropped and ``cost`` is added to spent.
        ``checks`` must be the admission's. Idempotent per request id.
        """
        ...

    async def release(self, request_id: str, checks: Sequence[Check]) -> None:
        """The request never reached an engine: undo every reservation (REQUESTS amounts too)."""
        ...

    async def read(self, checks: Sequence[Check]) -> tuple[CounterState, ...]:
        """Current state without reserving anything (for ``/v1/quota``)."""
        ...

    async def budget_totals(self, counter: str) -> tuple[int, int]:
        """(spent, reserved) of a budget counter, in nano-units (for reports and tests)."""
        ...

    async def close(self) -> None: ...
