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
from inferenceops.admission.memory_ledger import SWEEP_EVERY_S, MemoryLedger

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
