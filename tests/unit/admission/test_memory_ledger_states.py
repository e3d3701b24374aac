"""The memory ledger's counter states on a clock: what ``reset_s`` and ``retry_after_s`` say.

``test_ledger`` holds the semantics on both ledgers and ``test_memory_ledger_edges``
the retry hints of leases; these pin what mutmut found loose (``make mutation``):

* a counter that holds nothing resets now (0 s), a budget included — also on a
  clock that starts at zero, where "no state yet" must not read as "one second";
* a settlement starts a budget's ``ttl_s`` again, so spent lives that long after
  the last charge and then the counter starts over;
* expired leases leave however large their amount (budgets count in nano-units,
  far above any clock reading), and a concurrency counter's reset stays its
  latest outstanding lease after some of its leases were reaped;
* a window request asking for exactly the limit is told when enough of the window
  frees; the ticket outlives the longest window slot when that outlasts the lease;
* an id admitted again after a settle that named other checks holds its lease once.
"""

from __future__ import annotations

import pytest

from inferenceops.admission.ledger import Admitted, Check, CheckKind, CounterState, Refused
from inferenceops.admission.memory_ledger import EXPIRY_MARGIN_S, MemoryLedger, ticket_life_s

LEASE = 30.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def slots(limit: int = 3, amount: int = 1) -> Check:
    return Check(CheckKind.CONCURRENCY, "con:team:t", limit, amount, "slots")


def budget(amount: int, limit: int = 100, *, ttl: float | None = 3600.0) -> Check:
    return Check(CheckKind.BUDGET, "bud:team:t:m2026-12", limit, amount, "budget", ttl_s=ttl)


def tpm(limit: int, amount: int, window: float = 60.0) -> Check:
    return Check(CheckKind.TOKENS, "tpm:team:t", limit, amount, "tokens", window_s=window)


def admitted(result: Admitted | Refused) -> Admitted:
    assert isinstance(result, Admitted), result
    return result


def test_a_ticket_outlives_the_longest_window_slot_when_that_outlasts_the_lease() -> None:
    # An amount counts up to a window and one slot (1/60 of it) after its admission.
    assert ticket_life_s([tpm(10, 1, window=60.0)], 59.5) == pytest.approx(61.0 + EXPIRY_MARGIN_S)
    assert ticket_life_s([tpm(10, 1, window=60.0)], 100.0) == pytest.approx(100.0 + EXPIRY_MARGIN_S)
    assert ticket_life_s([slots()], 59.5) == pytest.approx(59.5 + EXPIRY_MARGIN_S)


@pytest.mark.parametrize("start", [0.0, 1000.0])
async def test_a_concurrency_counter_holding_nothing_resets_now(start: float) -> None:
    ledger = MemoryLedger(clock=Clock(start))
    admitted(await ledger.admit("a", [slots()], LEASE))
    await ledger.release("a", [slots()])
    assert await ledger.read([slots()]) == (CounterState(3, 0, 0.0),)
    # More slots than the limit: refused for good (no retry), and nothing is held.
    assert await ledger.admit("b", [slots(limit=1, amount=2)], LEASE) == Refused(
        0, None, CounterState(1, 0, 0.0))


@pytest.mark.parametrize("start", [0.0, 1000.0])
async def test_a_budget_never_charged_has_no_state_and_resets_now(start: float) -> None:
    ledger = MemoryLedger(clock=Clock(start))
    assert await ledger.admit("a", [budget(200)], LEASE) == Refused(0, None, CounterState(100, 0, 0.0))
    assert await ledger.budget_totals("bud:team:t:m2026-12") == (0, 0)


async def test_a_settlement_keeps_spent_for_ttl_s_after_it_then_the_budget_starts_over() -> None:
    clock = Clock(1000.0)
    ledger = MemoryLedger(clock=clock)
    admitted(await ledger.admit("a", [budget(40)], LEASE))  # reserved at 1000: ttl to 4600
    clock.now = 1010.0
    await ledger.settle("a", [budget(40)], tokens=0, cost=40)  # charged at 1010: ttl to 4610
    assert await ledger.read([budget(0)]) == (CounterState(100, 40, 3600.0),)
    clock.now = 4605.0
    assert await ledger.read([budget(0)]) == (CounterState(100, 40, 5.0),)
    clock.now = 4610.0
    assert await ledger.read([budget(0)]) == (CounterState(100, 0, 0.0),)


async def test_a_budget_without_ttl_keeps_spent_for_ever() -> None:
    clock = Clock(1000.0)
    ledger = MemoryLedger(clock=clock)
    admitted(await ledger.admit("a", [budget(40, ttl=None)], LEASE))
    await ledger.settle("a", [budget(40, ttl=None)], tokens=0, cost=40)
    clock.now = 10.0**9
    assert await ledger.read([budget(0, ttl=None)]) == (CounterState(100, 40, float("inf")),)


async def test_expired_reservations_leave_however_large_their_amount() -> None:
    clock = Clock(1000.0)
    ledger = MemoryLedger(clock=clock)
    limit, nanos = 10**12, 10**10  # ten currency units in nano-units: far above the clock
    admitted(await ledger.admit("a", [budget(nanos, limit)], 30.0))  # until 1030
    admitted(await ledger.admit("b", [budget(nanos, limit)], 100.0))  # until 1100
    clock.now = 1031.0
    assert await ledger.budget_totals("bud:team:t:m2026-12") == (0, nanos)
    clock.now = 1101.0
    assert await ledger.budget_totals("bud:team:t:m2026-12") == (0, 0)
    admitted(await ledger.admit("c", [budget(limit, limit)], 30.0))  # the whole limit is free again


async def test_a_concurrency_reset_stays_the_latest_lease_after_earlier_ones_were_reaped() -> None:
    clock = Clock(1000.0)
    ledger = MemoryLedger(clock=clock)
    admitted(await ledger.admit("short", [slots()], 1.0))  # until 1001
    admitted(await ledger.admit("long", [slots()], 100.0))  # until 1100
    clock.now = 1002.0  # "short" has expired: this admission reaps it
    third = admitted(await ledger.admit("third", [slots()], 10.0))  # until 1012
    assert third.states == (CounterState(3, 2, 98.0),)
    assert await ledger.read([slots()]) == (CounterState(3, 2, 98.0),)


async def test_a_window_request_for_exactly_the_limit_is_told_when_enough_frees() -> None:
    clock = Clock(1000.0)
    ledger = MemoryLedger(clock=clock)
    admitted(await ledger.admit("a", [tpm(10, 3)], LEASE))
    clock.now = 1005.0
    # 3 + 10 > 10: the 3 tokens admitted at 1000 must leave first, at 1060.
    assert await ledger.admit("b", [tpm(10, 10)], LEASE) == Refused(0, 55.0, CounterState(10, 3, 55.0))


async def test_an_id_admitted_again_after_a_settle_that_named_other_checks_holds_one_lease() -> None:
    ledger = MemoryLedger(clock=Clock(1000.0))
    admitted(await ledger.admit("a", [slots()], LEASE))
    await ledger.settle("a", [], tokens=0, cost=0)  # closes the ticket; the slot's lease stays
    again = admitted(await ledger.admit("a", [slots()], LEASE))
    assert again.states[0].used == 1
    await ledger.release("a", [slots()])
    assert await ledger.read([slots()]) == (CounterState(3, 0, 0.0),)
