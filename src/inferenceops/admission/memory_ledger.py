"""The admission ledger in one process's memory: the embedded default, and the reference semantics.

``RedisLedger`` implements exactly what this module does; the contract tests run
against both. No I/O here and no ``await`` inside an operation, so each
operation is atomic on its event loop (and cheap: it runs on every request).

Decisions beyond ``ledger.py``'s docstring, shared by both ledgers:

* **Tickets.** ``admit`` opens a ticket for the request id (``Admitted.ticket`` is
  the request id) holding its admission time, which names the slot it went into
  in each window counter; the first ``settle`` or ``release`` closes it and
  acts, any later call for that id does nothing (so settle-after-release,
  release-after-settle and repeats are no-ops). A ticket lives ``max(lease_s,
  longest window + its slot) + EXPIRY_MARGIN_S``; a settle or release after that
  does nothing at all. ``admit`` of an id whose ticket is still open raises
  ``ValueError`` (a bug in the caller, not a refusal). Once closed, the id may be
  admitted again. Nothing of a request outlives its ticket but its amounts in
  window slots.
* **Settle/release address counters by the checks passed**, which must be the
  admission's checks: their amounts are what is corrected or undone. A counter
  the request holds nothing in is skipped.
* **Window slots.** A window counter of ``window_s`` groups admissions into
  ``SLOTS`` slots of ``window_s / SLOTS`` on the clock's grid; a slot keeps the
  sum of its amounts and the time of its newest admission, and counts while
  ``now < newest + window_s`` (so an amount counts for ``window_s`` to ``window_s
  + slot`` after its admission). Hence at most ``SLOTS + 1`` slots per counter.
  Keyed to the newest admission rather than the slot's end, a slot retains at
  most what the grid forces, and a counter is free again exactly ``window_s``
  after its last admission (what ``reset_s`` and ``Retry-After`` then say).
  A counter keeps one ``window_s`` (its name says per minute); should it change,
  the slots admitted under the old one are merely approximate until they leave
  (the Redis ledger may restart such a counter).
* **Leases** (CONCURRENCY slots, BUDGET reservations) expire ``lease_s`` after
  admission, and count while ``now < expiry``. An expired reservation is
  dropped, not charged. A settle arriving after its lease expired (but while its
  ticket is open) still adds ``cost`` to spent: spent is the sum of the actual
  costs settled, however late. The Redis ledger also frees a lease early when the
  instance that took it has lost its heartbeat (``instance.py``), with the same
  consequences (freed once, dropped uncharged, a late settle still charged); here
  the only instance is this process, and its leases die with it.
* **TOKENS settle** adds ``tokens - reserved`` to the admission's slot, also
  when the request used more than it reserved (the window then tells the truth;
  it may exceed the limit by the underestimate); **release** takes the reserved
  amount out of its slot (REQUESTS and TOKENS). Either changes nothing once
  that slot has left the window.
* **CounterState.used** after a refusal is the usage without the request.
  ``reset_s``: windows — until the newest non-zero slot leaves (``window_s``
  right after an admission of a non-zero amount; 0 when none); CONCURRENCY —
  until the latest outstanding lease expires (an upper bound: slots usually free
  sooner); BUDGET — until the counter expires (``ttl_s`` after its last touch;
  ``math.inf`` when ``ttl_s`` is None; 0 when it has no state).
* **retry_after_s**: windows — walking the slots oldest first, when the slot
  that frees enough leaves; CONCURRENCY — when enough leases have expired at the
  latest (an upper bound); hard BUDGET — None if ``spent + amount > limit``
  (nothing but a new period helps), else when enough reservation leases have
  expired at the latest.
* **Soft budgets** reserve like hard ones and never refuse; ``over_soft``
  lists every soft budget whose ``spent + reserved`` exceeds its limit after
  this request's reservation (already over counts too, so every request made
  while over is flagged). ``hard`` means nothing for the other kinds.
* **Expiry of state**: idle window counters go once their newest slot leaves
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
SLOTS = 60  # slots per window; lua/ledger.lua has the same constant

_REQUESTS, _TOKENS = CheckKind.REQUESTS, CheckKind.TOKENS
_CONCURRENCY, _BUDGET = CheckKind.CONCURRENCY, CheckKind.BUDGET
_INF = math.inf
_SPAN = 1.0 + 1.0 / SLOTS  # the longest an amount counts, in windows


def ticket_life_s(checks: Sequence[Check], lease_s: float) -> float:
    """How long an admission can still be settled: past every lease and window slot it holds."""
    life = lease_s
    for check in checks:
        if (check.kind is _REQUESTS or check.kind is _TOKENS) and check.window_s * _SPAN > life:
            life = check.window_s * _SPAN
    return life + EXPIRY_MARGIN_S


class _Window:
    """A sliding window in time slots: ``[index, amount, newest admission time]`` per slot that
    was admitted into, oldest first, and their sum.

    An admission at ``t`` goes into slot ``t * SLOTS // window`` (a float, compared only with
    itself); slots are kept in time order, so the oldest always leaves first.
    """

    __slots__ = ("slots", "total", "window")

    def __init__(self, window: float) -> None:
        self.slots: deque[list[Any]] = deque()
        self.total = 0
        self.window = window  # for the sweep; every operation uses its check's window_s

    def trim(self, cutoff: float) -> None:
        slots, total = self.slots, self.total
        while slots and slots[0][2] <= cutoff:
            total -= slots.popleft()[1]
        self.total = total

    def add(self, index: float, amount: int, now: float) -> None:
        slots = self.slots
        if slots and (slot := slots[-1])[0] == index:
            slot[1] += amount
            slot[2] = now
        else:
            slots.append([index, amount, now])
        self.total += amount

    def adjust(self, index: float, delta: int, cutoff: float) -> None:
        """Add ``delta`` to slot ``index`` if it is still in the window (settles are recent: few steps)."""
        for slot in reversed(self.slots):
            if slot[0] <= index:
                if slot[0] == index and slot[2] > cutoff:
                    slot[1] += delta
                    self.total += delta
                return

    def reset(self, window: float, now: float) -> float:
        for slot in reversed(self.slots):  # released and zero-token slots do not count
            if slot[1] > 0:
                return float(slot[2] + window - now)
        return 0.0

    def retry(self, need: int, window: float, now: float) -> float | None:
        freed = 0
        for slot in self.slots:
            freed += slot[1]
            if freed >= need:
                return float(slot[2] + window - now)
        return None

    def idle(self, now: float) -> bool:
        return not self.slots or self.slots[-1][2] <= now - self.window


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
                return float(expiry - now)
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
        self._requests: dict[str, _Window] = {}
        self._tokens: dict[str, _Window] = {}
        self._slots: dict[str, _Leases] = {}
        self._budgets: dict[str, _Budget] = {}
        self._tickets: dict[str, tuple[float, float]] = {}  # request id -> (expiry, admitted at)
        self._sweep_at = clock() + SWEEP_EVERY_S
        self._sweep_work: list[tuple[dict[str, Any], list[str]]] = []

    async def admit(self, request_id: str, checks: Sequence[Check], lease_s: float) -> Admitted | Refused:
        if not checks:
            return Admitted(request_id, ())
        now = self._clock()
        if now >= self._sweep_at:
            self._sweep(now)
        ticket = self._tickets.get(request_id)
        if ticket is not None and ticket[0] > now:
            raise ValueError(f"request id {request_id!r} is already admitted and not yet settled")
        holders: list[Any] = []
        for index, check in enumerate(checks):  # check everything, reserve nothing
            kind = check.kind
            if kind is _REQUESTS or kind is _TOKENS:
                windows = self._tokens if kind is _TOKENS else self._requests
                window = windows.get(check.counter)
                if window is None:
                    window = windows[check.counter] = _Window(check.window_s)
                else:
                    cutoff = now - check.window_s
                    if window.slots and window.slots[0][2] <= cutoff:
                        window.trim(cutoff)
                if window.total + check.amount > check.limit:
                    return self._refuse_window(index, check, window, now)
                holders.append(window)
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
                holder.add(now * SLOTS // window, amount, now)
                holder.window = window
                if window * _SPAN > life:
                    life = window * _SPAN
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
        self._tickets[request_id] = (now + life + EXPIRY_MARGIN_S, now)
        return Admitted(request_id, tuple(states), tuple(over))

    async def settle(self, request_id: str, checks: Sequence[Check], tokens: int, cost: int) -> None:
        now = self._clock()
        ticket = self._tickets.pop(request_id, None)
        if ticket is None or ticket[0] <= now:
            return
        for check in checks:
            kind = check.kind
            if kind is _TOKENS:
                window = self._tokens.get(check.counter)
                if window is not None and tokens != check.amount:
                    window.adjust(ticket[1] * SLOTS // check.window_s, tokens - check.amount,
                                  now - check.window_s)
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
        ticket = self._tickets.pop(request_id, None)
        if ticket is None or ticket[0] <= now:
            return
        for check in checks:
            kind = check.kind
            if kind is _REQUESTS or kind is _TOKENS:
                window = (self._tokens if kind is _TOKENS else self._requests).get(check.counter)
                if window is not None and check.amount:
                    window.adjust(ticket[1] * SLOTS // check.window_s, -check.amount, now - check.window_s)
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

    def restore_spent(self, counter: str, spent: int, ttl_s: float | None) -> None:
        """Start budget ``counter`` at ``spent`` (at least): what the usage ledger says its
        period has spent, rebuilt at a worker's start (``control.spend_restore``)."""
        now = self._clock()
        budget = self._budgets.get(counter)
        if budget is None:
            budget = self._budgets[counter] = _Budget()
        budget.spent = max(budget.live_spent(now), spent)
        budget.touch(ttl_s, now)

    def restore_window(self, check: Check, used: int) -> None:
        """Count ``used`` in the window of ``check`` (REQUESTS or TOKENS) as of now: what the
        usage ledger says its last window held. It then leaves the window like an admission."""
        if check.kind is not _REQUESTS and check.kind is not _TOKENS:
            raise ValueError(f"{check.kind} is not a window counter")
        now = self._clock()
        windows = self._tokens if check.kind is _TOKENS else self._requests
        window = windows.get(check.counter)
        if window is None:
            window = windows[check.counter] = _Window(check.window_s)
        window.add(now * SLOTS // check.window_s, used, now)

    async def close(self) -> None:
        """Nothing to release; the counters die with the process."""

    def counters(self) -> int:
        """How many counters and open tickets are held (tests of the sweep, metrics)."""
        tables: tuple[dict[str, Any], ...] = (self._requests, self._tokens, self._slots, self._budgets,
                                              self._tickets)
        return sum(len(table) for table in tables)

    def entries(self) -> int:
        """How many window slots, leases and open tickets are held: at most ``SLOTS + 1`` per
        window counter plus one lease and one ticket per request in flight (tests, metrics)."""
        windows = sum(len(w.slots) for table in (self._requests, self._tokens) for w in table.values())
        leases = sum(len(h.leases) for table in (self._slots, self._budgets) for h in table.values())
        return windows + leases + len(self._tickets)

    def _state(self, check: Check, now: float) -> CounterState:
        kind = check.kind
        if kind is _REQUESTS or kind is _TOKENS:
            window = (self._tokens if kind is _TOKENS else self._requests).get(check.counter)
            if window is None:
                return CounterState(check.limit, 0, 0.0)
            window.trim(now - check.window_s)
            return CounterState(check.limit, window.total, window.reset(check.window_s, now))
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

    def _refuse_window(self, index: int, check: Check, window: _Window, now: float) -> Refused:
        retry = None
        if check.amount <= check.limit:
            retry = window.retry(window.total + check.amount - check.limit, check.window_s, now)
        return Refused(index, retry, CounterState(check.limit, window.total,
                                                  window.reset(check.window_s, now)))

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
                if value is not None and (value[0] <= now if type(value) is tuple else value.idle(now)):
                    del table[key]
            if not keys:
                work.pop()
        self._sweep_at = now if work else now + SWEEP_EVERY_S
