"""The memory ledger on a clock: exact retry hints, and a sweep that never drops what is live.

``test_ledger`` holds the semantics on both ledgers; these pin what mutmut found
loose in the memory ledger (``make mutation``):

* when a budget or a concurrency limit refuses, the retry hint is the moment
  enough *in-flight* reservations end — exactly, counting as many leases as the
  request needs — and there is none when spending alone leaves no room;
* the periodic sweep drops idle counters only: a request in flight keeps its
  slot, its budget reservation and its ticket, so its settlement still charges
  what it used and corrects its tokens.
"""

from __future__ import annotations

from inferenceops.admission.ledger import Admitted, Check, CheckKind, CounterState, Refused
from inferenceops.admission.memory_ledger import (
    EXPIRY_MARGIN_S,
    SLOTS,
    SWEEP_EVERY_S,
    MemoryLedger,
    ticket_life_s,
)

LEASE = 30.0


def budget(amount: int, limit: int = 100) -> Check:
    return Check(CheckKind.BUDGET, "bud:team:t:m2026-12", limit, amount, "budget", ttl_s=3600.0)


def slots(amount: int = 1, limit: int = 3) -> Check:
    return Check(CheckKind.CONCURRENCY, "con:team:t", limit, amount, "slots")


def tokens(amount: int) -> Check:
    return Check(CheckKind.TOKENS, "tpm:team:t", 10_000, amount, "tokens")


def refused(result: Admitted | Refused) -> Refused:
    assert isinstance(result, Refused), result
    return result


async def test_a_budget_refusal_hints_when_enough_reservations_end_or_none_if_spent_blocks_it() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    assert isinstance(await ledger.admit("a", [budget(40)], LEASE), Admitted)
    await ledger.settle("a", [budget(40)], tokens=0, cost=40)  # spent 40
    assert isinstance(await ledger.admit("b", [budget(30)], LEASE), Admitted)  # ends at 1030
    now[0] = 1005.0
    assert isinstance(await ledger.admit("c", [budget(20)], LEASE), Admitted)  # ends at 1035
    now[0] = 1010.0
    # 40 spent + 50 reserved; 60 more fits once both reservations are gone: spent + 60 = limit.
    result = refused(await ledger.admit("d", [budget(60)], LEASE))
    assert result.retry_after_s == 25.0
    assert (result.state.limit, result.state.used) == (100, 90)
    assert result.state.reset_s == 3600.0 - 5.0  # the counter lives on ttl_s after its last use
    # One more and it never fits this period, whatever ends.
    assert refused(await ledger.admit("e", [budget(61)], LEASE)).retry_after_s is None


async def test_a_concurrency_refusal_hints_when_enough_slots_end() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    for rid, at in (("a", 1000.0), ("b", 1005.0), ("c", 1008.0)):
        now[0] = at
        assert isinstance(await ledger.admit(rid, [slots()], LEASE), Admitted)
    now[0] = 1010.0
    result = refused(await ledger.admit("d", [slots(amount=2)], LEASE))
    assert result.retry_after_s == 25.0  # two must end: a at 1030, then b at 1035
    assert result.state == CounterState(3, 3, 28.0)  # all free once c ends, at 1038


async def test_a_sweep_keeps_what_requests_in_flight_hold_and_they_settle_in_full() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    held = [slots(), budget(50), tokens(500)]
    assert isinstance(await ledger.admit("long", held, lease_s=600.0), Admitted)
    spent_only = Check(CheckKind.BUDGET, "bud:key:k:d2026-12-04", 100, 9, "budget", ttl_s=3600.0)
    assert isinstance(await ledger.admit("done", [spent_only], LEASE), Admitted)
    await ledger.settle("done", [spent_only], tokens=0, cost=9)  # spent, nothing reserved
    now[0] += SWEEP_EVERY_S + 1  # the next admission sweeps
    for i in range(3):
        other = [Check(CheckKind.REQUESTS, f"rpm:{i}", 10, 1, "rpm")]
        assert isinstance(await ledger.admit(f"o{i}", other, LEASE), Admitted)
        await ledger.settle(f"o{i}", other, tokens=1, cost=0)
    states = await ledger.read(held)
    assert [s.used for s in states] == [1, 50, 500]  # slot, reservation, tokens: all still held
    assert await ledger.budget_totals(spent_only.counter) == (9, 0)  # spent lives out its period
    await ledger.settle("long", held, tokens=7, cost=12)
    states = await ledger.read(held)
    assert [s.used for s in states] == [0, 12, 7]
    assert await ledger.budget_totals("bud:team:t:m2026-12") == (12, 0)


# -- counter states, exactly, on the clock (the admission headers and /v1/quota read them) -------

def rpm(limit: int = 5) -> Check:
    return Check(CheckKind.REQUESTS, "rpm:key:k", limit, 1, "rpm")


def tpm(amount: int, limit: int = 1000) -> Check:
    return Check(CheckKind.TOKENS, "tpm:key:k", limit, amount, "tpm")


def forever(amount: int) -> Check:
    return Check(CheckKind.BUDGET, "bud:key:k:life", 100, amount, "lifetime", ttl_s=None)


async def test_counter_states_after_an_admission_and_on_a_later_read() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    checks = [rpm(), tpm(100), slots(limit=4), budget(10), forever(10)]
    result = await ledger.admit("a", checks, LEASE)
    assert isinstance(result, Admitted) and result.ticket == "a" and result.over_soft == ()
    assert result.states == (CounterState(5, 1, 60.0), CounterState(1000, 100, 60.0),
                             CounterState(4, 1, 30.0), CounterState(100, 10, 3600.0),
                             CounterState(100, 10, float("inf")))
    now[0] = 1010.0
    later = await ledger.admit("b", [slots(limit=4), tpm(0)], lease_s=10.0)  # ends before a's
    assert isinstance(later, Admitted)
    assert later.states == (CounterState(4, 2, 20.0), CounterState(1000, 100, 50.0))
    assert await ledger.read(checks) == (
        CounterState(5, 1, 50.0), CounterState(1000, 100, 50.0), CounterState(4, 2, 20.0),
        CounterState(100, 10, 3590.0), CounterState(100, 10, float("inf")))
    never = [Check(kind, f"{kind.value}:never", 9, 1, "x")
             for kind in (CheckKind.REQUESTS, CheckKind.TOKENS, CheckKind.CONCURRENCY, CheckKind.BUDGET)]
    assert await ledger.read(never) == tuple(CounterState(9, 0, 0.0) for _ in never)
    assert await ledger.admit("nothing", [], LEASE) == Admitted("nothing", ())


async def test_a_window_of_released_or_zero_amounts_resets_at_once() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    assert isinstance(await ledger.admit("one", [tpm(1)], LEASE), Admitted)
    await ledger.release("one", [tpm(1)])
    now[0] = 1010.0
    assert await ledger.read([tpm(1)]) == (CounterState(1000, 0, 0.0),)
    assert (await ledger.admit("zero", [tpm(0)], LEASE)).states == (CounterState(1000, 0, 0.0),)  # type: ignore[union-attr]


async def test_a_window_refusal_hints_when_enough_earlier_amounts_leave_it() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    for rid, at, amount in (("a", 1000.0, 30), ("b", 1010.0, 50)):
        now[0] = at
        assert isinstance(await ledger.admit(rid, [tpm(amount, limit=100)], LEASE), Admitted)
    now[0] = 1020.0
    assert refused(await ledger.admit("c", [tpm(51, limit=100)], LEASE)).retry_after_s == 50.0
    assert refused(await ledger.admit("d", [tpm(90, limit=100)], LEASE)).retry_after_s == 50.0
    assert refused(await ledger.admit("e", [tpm(21, limit=100)], LEASE)).retry_after_s == 40.0


async def test_a_budget_refusal_counts_reservations_in_order_of_their_end() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    assert isinstance(await ledger.admit("a", [budget(40)], LEASE), Admitted)
    await ledger.settle("a", [budget(40)], tokens=0, cost=40)
    assert isinstance(await ledger.admit("b", [budget(30)], LEASE), Admitted)  # ends at 1030
    now[0] = 1005.0
    assert isinstance(await ledger.admit("c", [budget(20)], LEASE), Admitted)  # ends at 1035
    now[0] = 1010.0
    assert refused(await ledger.admit("d", [budget(41)], LEASE)).retry_after_s == 25.0  # needs 31


async def test_a_soft_budget_exactly_at_its_limit_is_not_over_it() -> None:
    ledger = MemoryLedger(clock=lambda: 1000.0)
    soft = Check(CheckKind.BUDGET, "bud:key:k:d", 10, 10, "soft", hard=False, ttl_s=60.0)
    result = await ledger.admit("a", [soft], LEASE)
    assert isinstance(result, Admitted) and result.over_soft == ()
    over = await ledger.admit("b", [soft], LEASE)
    assert isinstance(over, Admitted) and over.over_soft == (0,)


async def test_expired_leases_are_reaped_before_the_next_admission_and_live_ones_kept() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    held = [budget(40), slots(limit=2)]
    assert isinstance(await ledger.admit("a", held, LEASE), Admitted)  # ends at 1030 (settle lost)
    now[0] = 1010.0
    assert isinstance(await ledger.admit("c", held, LEASE), Admitted)  # ends at 1040
    now[0] = 1000.0 + LEASE
    result = await ledger.admit("b", held, LEASE)
    assert isinstance(result, Admitted)
    assert [s.used for s in result.states] == [80, 2]  # c's and b's; a's are gone


async def test_a_settle_long_after_its_lease_still_corrects_its_tokens() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    assert isinstance(await ledger.admit("a", [tpm(500)], lease_s=2.0), Admitted)
    now[0] = 1030.0  # the lease is long over; the window still counts the tokens
    await ledger.settle("a", [tpm(500)], tokens=7, cost=0)
    assert (await ledger.read([tpm(500)]))[0].used == 7


async def test_a_settle_or_release_after_its_counters_were_swept_is_harmless() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    short = Check(CheckKind.BUDGET, "bud:key:k:short", 100, 5, "budget", ttl_s=5.0)
    for rid in ("s", "r"):
        assert isinstance(await ledger.admit(rid, [tpm(500), short], lease_s=2.0), Admitted)
    now[0] = 1060.5  # the window and the budget are idle; the tickets live on (61 s + margin)
    other = [Check(CheckKind.REQUESTS, "rpm:other", 10, 1, "rpm")]
    assert isinstance(await ledger.admit("o", other, LEASE), Admitted)  # sweeps both counters
    await ledger.settle("s", [tpm(500), short], tokens=7, cost=3)
    await ledger.release("r", [tpm(500), short])
    assert await ledger.budget_totals(short.counter) == (3, 0)


async def test_admissions_within_one_slot_share_it() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    for i in range(200):
        now[0] += 0.004  # 200 admissions within one second
        assert isinstance(await ledger.admit(f"r{i}", [rpm(10**6), tpm(5)], LEASE), Admitted)
        await ledger.settle(f"r{i}", [rpm(10**6), tpm(5)], tokens=5, cost=0)
    assert ledger.entries() <= 4  # a slot or two per window, no ticket left


def test_a_ticket_lives_past_its_lease_and_its_windows_by_the_margin() -> None:
    span = 60.0 * (1 + 1 / SLOTS)  # the longest a window amount counts
    window = [tpm(5)]
    assert ticket_life_s(window, 2.0) == span + EXPIRY_MARGIN_S
    assert ticket_life_s([rpm()], 2.0) == span + EXPIRY_MARGIN_S
    assert ticket_life_s([slots(), budget(1)], 2.0) == 2.0 + EXPIRY_MARGIN_S
    assert ticket_life_s(window, 100.0) == 100.0 + EXPIRY_MARGIN_S
    assert ticket_life_s([], 60.5) == 60.5 + EXPIRY_MARGIN_S


async def test_a_settle_within_the_margin_after_a_window_still_charges_the_budget() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    held = [tpm(5), budget(10)]
    assert isinstance(await ledger.admit("a", held, lease_s=60.0), Admitted)
    now[0] = 1000.0 + 60.0 * (1 + 1 / 60) + 29.0  # past the lease and the window, within the margin
    await ledger.settle("a", held, tokens=5, cost=7)
    assert await ledger.budget_totals(budget(10).counter) == (7, 0)
