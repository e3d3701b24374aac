"""The admission ledger in one process's memory: the embedded default, and the reference semantics.

``RedisLedger`` implements exactly what this module does; the contract tests run
against both. No I/O here and no ``await`` inside an operation, so each
operation is atomic on its event loop (and cheap: it runs on every request).

Decisions beyond ``ledger.py``'s docstring, shared by both ledgers:

* **Tickets.** ``admit`` opens a ticket for the request id (``Admitted.ticket`` is
  the request id); the first ``settle`` or ``release`` closes it and acts, any
  later call for that id does nothing (so settle-after-release, release-after-
  settle and repeats are no-ops). A ticket lives ``max(lease_s, longest window)
  + EXPIRY_MARGIN_S``; a settle or release after that does nothing at all.
  ``admit`` of an id whose ticket is still open raises ``ValueError`` (a bug in
  the caller, not a refusal). Once closed, the id may be admitted again.
* **Settle/release address counters by the checks passed**, which should be
  the admission's checks; a counter the request holds nothing in is skipped.
* **Leases** (CONCURRENCY slots, BUDGET reservations) expire ``lease_s`` after
  admission. An expired reservation is dropped, not charged. A settle arriving
  after its lease expired (but while its ticket is open) still adds ``cost`` to
  spent: spent is the sum of the actual costs settled, however late.
* **TOKENS settle** sets the entry to the actual count even when it is larger
  than the reservation (the window then tells the truth; it may exceed the
  limit by the underestimate). Settling or releasing an entry that already
  left the window changes nothing.
* **Time boundaries.** A window entry counts while ``now - admitted_at <
  window_s``; a lease while ``now < expiry``.
* **CounterState.used** after a refusal is the usage without the request.
  ``reset_s``: windows — until the newest non-zero entry leaves (0 when none);
  CONCURRENCY — until the latest outstanding lease expires (an upper bound:
  slots usually free sooner); BUDGET — until the counter expires (``ttl_s``
  after its last touch; ``math.inf`` when ``ttl_s`` is None; 0 when it has no
  state).
* **retry_after_s**: windows — when enough of the oldest entries have left;
  CONCURRENCY — when enough leases have expired at the latest (an upper bound);
  hard BUDGET — None if ``spent + amount > limit`` (nothing but a new period
  helps), else when enough reservation leases have expired at the latest.
* **Soft budgets** reserve like hard ones and never refuse; ``over_soft``
  lists every soft budget whose ``spent + reserved`` exceeds its limit after
  this request's reservation (already over counts too, so every request made
  while over is flagged). ``hard`` means nothing for the other kinds.
* **Expiry of state**: idle window counters go once their newest entry leaves
  the window, lease holders once every lease expired, budgets once ``ttl_s``
  passed since their last touch with no live lease (never when ``ttl_s`` is
  None). Here an amortized sweep (a few counters per admission, a round every
  ``SWEEP_EVERY_S``); in Redis, key expiry.
* Integers: exact here at any size; the Redis ledger bounds every amount,
  limit and total below 2**53 and refuses larger ones with ``ValueError``.
* An empty ``checks`` admits at once, without a ticket.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from inferenceops.admission.ledger import Admitted, Check, CheckKind, CounterState, Refused

EXPIRY_MARGIN_S = 30.0
SWEEP_EVERY_S = 10.0
SWEEP_BATCH = 64

_REQUESTS, _TOKENS = CheckKind.REQUESTS, CheckKind.TOKENS
_CONCURRENCY, _BUDGET = CheckKind.CONCURRENCY, CheckKind.BUDGET
_INF = math.inf


def ticket_life_s(checks: Sequence[Check], lease_s: float) -> float:
    """How long an admission can still be settled: past every lease and window it holds."""
    life = lease_s
    for check in checks:
        if (check.kind is _REQUESTS or check.kind is _TOKENS) and check.window_s > life:
            life = check.window_s
    return life + EXPIRY_MARGIN_S


class _Log:
    """A sliding window: entries ``[admitted_at, amount, request_id]`` oldest first, their sum,
    and the newest entry of each request id (for settle/release)."""

    __slots__ = ("entries", "total", "window", "index")

    def __init__(self, window: float) -> None:
        self.entries: deque[list[Any]] = deque()
        self.total = 0
        self.window = window
        self.index: dict[str, list[Any]] = {}

    def trim(self, cutoff: float) -> None:
        entries, index, total = self.entries, self.index, self.total
        while entries and entries[0][0] <= cutoff:
            entry = entries.popleft()
            total -= entry[1]
            if index.get(entry[2]) is entry:
                del index[entry[2]]
        self.total = total

    def reset(self, window: float, now: float) -> float:
        for entry in reversed(self.entries):  # released and zero-token entries do not count
            if entry[1] > 0:
                return entry[0] + window - now
        return 0.0

    def retry(self, need: int, window: float, now: float) -> float | None:
        freed = 0
        for entry in self.entries:
            freed += entry[1]
            if freed >= need:
                return entry[0] + window - now
        return None

    def idle(self, now: float) -> bool:
        return not self.entries or self.entries[-1][0] <= now - self.window


class _Leases:
    """Leased amounts ``request_id -> [expiry, amount]`` and their sum.

    ``next_expiry`` is a lower bound of the earliest expiry (settles leave it
    stale), so reaping scans only when something may really have expired;
    ``latest`` likewise is an upper bound of the latest expiry.
    """

    __slots__ = ("leases", "used", "next_expiry", "latest")

    def __init__(self) -> None:
        self.leases: dict[str, list[Any]] = {}  # [expiry, amount]
        self.used = 0
        self.next_expiry = _INF
        self.latest = 0.0

    def reap(self, now: float) -> None:
        if now < self.next_expiry:
            return
        leases = self.leases
        for request_id in [rid for rid, lease in leases.items() if lease[0] <= now]:
            self.used -= leases.pop(request_id)[1]
        self.next_expiry = min((lease[0] for lease in leases.values()), default=_INF)
        self.latest = max((lease[0] for lease in leases.values()), default=0.0)

    def exact_latest(self) -> float:
        self.latest = max((lease[0] for lease in self.leases.values()), default=0.0)
        return self.latest

    def retry(self, need: int, now: float) -> float | None:
        freed = 0
        for expiry, amount in sorted(self.leases.values()):
            freed += amount
            if freed >= need:
                return expiry - now
        return None

    def drop(self, request_id: str) -> None:
        lease = self.leases.pop(request_id, None)
        if lease is not None:
            self.used -= lease[1]

    def idle(self, now: float) -> bool:
        return all(lease[0] <= now for lease in self.leases.values())


class _Budget(_Leases):
    """Reservations (``used``) plus ``spent``, which lives until ``deadline`` (None: forever;
    a past deadline means the counter has no state, like an expired Redis key)."""

    __slots__ = ("spent", "deadline")

    def __init__(self) -> None:
        super().__init__()
        self.spent = 0
        self.deadline: float | None = 0.0

    def live_spent(self, now: float) -> int:
        if self.deadline is not None and self.deadline <= now:
            self.spent = 0
        return self.spent

    def touch(self, ttl_s: float | None, now: float) -> None:
        self.deadline = None if ttl_s is None else now + ttl_s

    def reset(self, now: float) -> float:
        return _INF if self.deadline is None else max(0.0, self.deadline - now)

    def idle(self, now: float) -> bool:
        return self.deadline is not None and self.deadline <= now and super().idle(now)


class MemoryLedger:
    """All counters of one process; ``clock`` is monotonic seconds (injectable for tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._requests: dict[str, _Log] = {}
        self._tokens: dict[str, _Log] = {}
        self._slots: dict[str, _Leases] = {}
        self._budgets: dict[str, _Budget] = {}
        self._tickets: dict[str, float] = {}  # request id -> ticket expiry
        self._sweep_at = clock() + SWEEP_EVERY_S
        self._sweep_work: list[tuple[dict[str, Any], list[str]]] = []

    async def admit(self, request_id: str, checks: Sequence[Check], lease_s: float) -> Admitted | Refused:
        if not checks:
            return Admitted(request_id, ())
        now = self._clock()
        if now >= self._sweep_at:
            self._sweep(now)
        open_until = self._tickets.get(request_id)
        if open_until is not None and open_until > now:
            raise ValueError(f"request id {request_id!r} is already admitted and not yet settled")
        holders: list[Any] = []
        for index, check in enumerate(checks):  # check everything, reserve nothing
            kind = check.kind
            if kind is _REQUESTS or kind is _TOKENS:
                logs = self._tokens if kind is _TOKENS else self._requests
                log = logs.get(check.counter)
                if log is None:
                    log = logs[check.counter] = _Log(check.window_s)
                else:
                    cutoff = now - check.window_s
                    if log.entries and log.entries[0][0] <= cutoff:
                        log.trim(cutoff)
                if log.total + check.amount > check.limit:
                    return self._refuse_log(index, check, log, now)
                holders.append(log)
            elif kind is _CONCURRENCY:
                slots = self._slots.get(check.counter)
                if slots is None:
                    slots = self._slots[check.counter] = _Leases()
                elif now >= slots.next_expiry:
                    slots.reap(now)
                if slots.used + check.amount > check.limit:
                    return self._refuse_slots(index, check, slots, now)
                holders.append(slots)
            else:
                budget = self._budgets.get(check.counter)
                if budget is None:
                    budget = self._budgets[check.counter] = _Budget()
                elif now >= budget.next_expiry:
                    budget.reap(now)
                if check.hard and budget.live_spent(now) + budget.used + check.amount > check.limit:
                    return self._refuse_budget(index, check, budget, now)
                holders.append(budget)
        return self._reserve(request_id, checks, holders, lease_s, now)

    def _reserve(self, request_id: str, checks: Sequence[Check], holders: list[Any], lease_s: float,
                 now: float) -> Admitted:
        life = lease_s
        expiry = now + lease_s
        states = []
        over: list[int] = []
        for index, check in enumerate(checks):
            holder = holders[index]
            amount = check.amount
            kind = check.kind
            if kind is _REQUESTS or kind is _TOKENS:
                window = check.window_s
                entry = [now, amount, request_id]
                holder.entries.append(entry)
                holder.index[request_id] = entry
                holder.total += amount
                holder.window = window
                if window > life:
                    life = window
                reset = window if amount > 0 else holder.reset(window, now)
                states.append(CounterState(check.limit, holder.total, reset))
                continue
            holder.drop(request_id)  # a stale lease of a reused id, never in normal use
            holder.leases[request_id] = [expiry, amount]
            holder.used += amount
            if expiry < holder.next_expiry:
                holder.next_expiry = expiry
            if expiry >= holder.latest:
                holder.latest = expiry
            if kind is _CONCURRENCY:
                latest = expiry if expiry >= holder.latest else holder.exact_latest()
                states.append(CounterState(check.limit, holder.used, latest - now))
            else:
                ttl = check.ttl_s
                holder.live_spent(now)
                holder.touch(ttl, now)
                used = holder.spent + holder.used
                if not check.hard and used > check.limit:
                    over.append(index)
                states.append(CounterState(check.limit, used, _INF if ttl is None else ttl))
        self._tickets[request_id] = now + life + EXPIRY_MARGIN_S
        return Admitted(request_id, tuple(states), tuple(over))

    async def settle(self, request_id: str, checks: Sequence[Check], tokens: int, cost: int) -> None:
        now = self._clock()
        open_until = self._tickets.pop(request_id, None)
        if open_until is None or open_until <= now:
            return
        for check in checks:
            kind = check.kind
            if kind is _TOKENS:
                log = self._tokens.get(check.counter)
                if log is not None and (entry := log.index.get(request_id)) is not None:
                    log.total += tokens - entry[1]
                    entry[1] = tokens
            elif kind is _CONCURRENCY:
                slots = self._slots.get(check.counter)
                if slots is not None:
                    slots.drop(request_id)
            elif kind is _BUDGET:
                budget = self._budgets.get(check.counter)
                if budget is None:
                    budget = self._budgets[check.counter] = _Budget()
                budget.drop(request_id)
                budget.spent = budget.live_spent(now) + cost
                budget.touch(check.ttl_s, now)

    async def release(self, request_id: str, checks: Sequence[Check]) -> None:
        now = self._clock()
        open_until = self._tickets.pop(request_id, None)
        if open_until is None or open_until <= now:
            return
        for check in checks:
            kind = check.kind
            if kind is _REQUESTS or kind is _TOKENS:
                log = (self._tokens if kind is _TOKENS else self._requests).get(check.counter)
                if log is not None and (entry := log.index.pop(request_id, None)) is not None:
                    log.total -= entry[1]  # the entry stays, as 0, until it leaves the window
                    entry[1] = 0
            else:
                holder = (self._slots if kind is _CONCURRENCY else self._budgets).get(check.counter)
                if holder is not None:
                    holder.drop(request_id)

    async def read(self, checks: Sequence[Check]) -> tuple[CounterState, ...]:
        now = self._clock()
        return tuple(self._state(check, now) for check in checks)

    async def budget_totals(self, counter: str) -> tuple[int, int]:
        budget = self._budgets.get(counter)
        if budget is None:
            return 0, 0
        now = self._clock()
        budget.reap(now)
        return budget.live_spent(now), budget.used

    async def close(self) -> None:
        """Nothing to release; the counters die with the process."""

    def counters(self) -> int:
        """How many counters and open tickets are held (tests of the sweep, metrics)."""
        return sum(map(len, (self._requests, self._tokens, self._slots, self._budgets, self._tickets)))

    def _state(self, check: Check, now: float) -> CounterState:
        kind = check.kind
        if kind is _REQUESTS or kind is _TOKENS:
            log = (self._tokens if kind is _TOKENS else self._requests).get(check.counter)
            if log is None:
                return CounterState(check.limit, 0, 0.0)
            log.trim(now - check.window_s)
            return CounterState(check.limit, log.total, log.reset(check.window_s, now))
        if kind is _CONCURRENCY:
            slots = self._slots.get(check.counter)
            if slots is None:
                return CounterState(check.limit, 0, 0.0)
            slots.reap(now)
            return CounterState(check.limit, slots.used, max(0.0, slots.exact_latest() - now))
        budget = self._budgets.get(check.counter)
        if budget is None:
            return CounterState(check.limit, 0, 0.0)
        budget.reap(now)
        return CounterState(check.limit, budget.live_spent(now) + budget.used, budget.reset(now))

    def _refuse_log(self, index: int, check: Check, log: _Log, now: float) -> Refused:
        retry = None
        if check.amount <= check.limit:
            retry = log.retry(log.total + check.amount - check.limit, check.window_s, now)
        return Refused(index, retry, CounterState(check.limit, log.total, log.reset(check.window_s, now)))

    def _refuse_slots(self, index: int, check: Check, slots: _Leases, now: float) -> Refused:
        retry = None
        if check.amount <= check.limit:
            retry = slots.retry(slots.used + check.amount - check.limit, now)
        return Refused(index, retry, CounterState(check.limit, slots.used,
                                                  max(0.0, slots.exact_latest() - now)))

    def _refuse_budget(self, index: int, check: Check, budget: _Budget, now: float) -> Refused:
        used = budget.spent + budget.used
        retry = None
        if budget.spent + check.amount <= check.limit:
            retry = budget.retry(used + check.amount - check.limit, now)
        return Refused(index, retry, CounterState(check.limit, used, budget.reset(now)))

    def _sweep(self, now: float) -> None:
        """Drop idle counters and stale tickets: a round copies the keys (C speed, ~1 ms per 100k),
        then each admission checks SWEEP_BATCH of them, so no admission pays for the whole round."""
        work = self._sweep_work
        if not work:
            work += [(d, list(d)) for d in (self._requests, self._tokens, self._slots, self._budgets,
                                            self._tickets)]
        budget = SWEEP_BATCH
        while work and budget > 0:
            table, keys = work[-1]
            while keys and budget > 0:
                key = keys.pop()
                budget -= 1
                value = table.get(key)
                if value is not None and (value <= now if type(value) is float else value.idle(now)):
                    del table[key]
            if not keys:
                work.pop()
        self._sweep_at = now if work else now + SWEEP_EVERY_S
