"""The ledger contract: MemoryLedger and RedisLedger behave the same, check by check.

Every contract test runs against both (``memory``, ``redis``). The Redis variant
uses the real server at 127.0.0.1:6379 (``INFERENCEOPS_TEST_REDIS_URL``
overrides) with a prefix of its own, deleted afterwards, and is skipped, with the
reason, only when no server answers. Windows and leases are a few tenths of a
second where expiry is the point (a 0.6 s window has 10 ms slots), with
generous margins; nothing else waits on time. The memory ledger's exact time
behaviour is tested on an injected clock instead.
"""

from __future__ import annotations

import asyncio
import copy
import os
import random
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from inferenceops.admission.ledger import (
    Admitted,
    Check,
    CheckKind,
    CounterState,
    Ledger,
    LedgerUnavailable,
    Refused,
)
from inferenceops.admission.memory_ledger import SLOTS, MemoryLedger
from inferenceops.admission.redis_ledger import SCRIPT, RedisLedger

REDIS_URL = os.environ.get("INFERENCEOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LEASE = 30.0


def rpm(limit: int, *, window: float = 60.0, counter: str = "rpm:key:k1") -> Check:
    return Check(CheckKind.REQUESTS, counter, limit, 1, f"requests of {counter}", window_s=window)


def tpm(limit: int, amount: int, *, window: float = 60.0, counter: str = "tpm:team:t1") -> Check:
    return Check(CheckKind.TOKENS, counter, limit, amount, f"tokens of {counter}", window_s=window)


def slots(limit: int, *, amount: int = 1, counter: str = "conc:key:k1") -> Check:
    return Check(CheckKind.CONCURRENCY, counter, limit, amount, f"concurrency of {counter}")


def budget(limit: int, amount: int, *, hard: bool = True, ttl: float | None = 3600.0,
           counter: str = "budget:team:t1:2026-11") -> Check:
    return Check(CheckKind.BUDGET, counter, limit, amount, f"budget of {counter}", hard=hard, ttl_s=ttl)


def raw_redis() -> Redis:
    return Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0))


async def redis_absent() -> str | None:
    client = raw_redis()
    try:
        await client.ping()
        return None
    except (RedisError, OSError) as error:
        return f"no Redis server answers at {REDIS_URL} ({type(error).__name__}: {error})"
    finally:
        await client.aclose()


async def delete_prefix(prefix: str) -> None:
    client = raw_redis()
    try:
        keys = [key async for key in client.scan_iter(match="{" + prefix + "}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def fresh_prefix() -> str:
    if reason := await redis_absent():
        pytest.skip(reason)
    return f"test-ledger-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = await fresh_prefix()
    yield prefix
    await delete_prefix(prefix)


@pytest.fixture(params=["memory", "redis"])
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[Ledger]:
    if request.param == "memory":
        yield MemoryLedger()
        return
    prefix = await fresh_prefix()
    redis_ledger = RedisLedger(REDIS_URL, prefix=prefix)
    try:
        yield redis_ledger
    finally:
        await redis_ledger.close()
        await delete_prefix(prefix)


def admitted(result: Admitted | Refused) -> Admitted:
    assert isinstance(result, Admitted), result
    return result


def refused(result: Admitted | Refused) -> Refused:
    assert isinstance(result, Refused), result
    return result


# One check of each kind with room for exactly 3 requests; (check, unit per request).
KINDS = {
    "requests": (rpm(3), 1),
    "tokens": (tpm(30, 10), 10),
    "concurrency": (slots(3), 1),
    "budget": (budget(30, 10), 10),
}


@pytest.mark.parametrize("kind", KINDS)
async def test_each_kind_admits_up_to_its_limit_then_refuses_with_the_failing_index(
        ledger: Ledger, kind: str) -> None:
    target, unit = KINDS[kind]
    roomy = rpm(1000, counter="rpm:team:roomy")
    for n in range(1, 4):
        result = admitted(await ledger.admit(f"r{n}", [roomy, target], LEASE))
        assert result.ticket == f"r{n}"
        assert result.states[1].used == n * unit
        assert result.states[1].remaining == (3 - n) * unit
    result = refused(await ledger.admit("r4", [roomy, target], LEASE))
    assert result.index == 1
    assert result.state.limit == 3 * unit
    assert result.state.used == 3 * unit and result.state.remaining == 0
    bound = target.window_s if kind in ("requests", "tokens") else LEASE
    assert result.retry_after_s is not None and 0 < result.retry_after_s <= bound
    assert (await ledger.read([roomy]))[0].used == 3  # the refused request took nothing


@pytest.mark.parametrize("check", [rpm(0), tpm(100, 101), slots(1, amount=2), budget(100, 101)],
                         ids=["requests", "tokens", "concurrency", "budget"])
async def test_an_amount_larger_than_the_limit_alone_is_refused_with_no_retry_after(
        ledger: Ledger, check: Check) -> None:
    result = refused(await ledger.admit("big", [check], LEASE))
    assert (result.index, result.retry_after_s, result.state.used) == (0, None, 0)


async def test_a_budget_whose_spent_leaves_no_room_refuses_with_no_retry_after(ledger: Ledger) -> None:
    admitted(await ledger.admit("a", [budget(100, 60)], LEASE))
    await ledger.settle("a", [budget(100, 60)], tokens=1, cost=50)
    result = refused(await ledger.admit("b", [budget(100, 60)], LEASE))
    assert result.retry_after_s is None and result.state.used == 50


async def test_a_full_budget_held_by_reservations_refuses_until_their_leases_end(ledger: Ledger) -> None:
    admitted(await ledger.admit("a", [budget(100, 60)], LEASE))
    result = refused(await ledger.admit("b", [budget(100, 60)], LEASE))
    assert result.retry_after_s is not None and 0 < result.retry_after_s <= LEASE


async def test_a_later_failing_check_reserves_nothing_in_the_earlier_ones(ledger: Ledger) -> None:
    passing = [rpm(10), tpm(1000, 100), slots(5), budget(1000, 100)]
    failing = tpm(50, 100, counter="tpm:model:m1")
    result = refused(await ledger.admit("x", [*passing, failing], LEASE))
    assert result.index == 4
    assert [s.used for s in await ledger.read(passing)] == [0, 0, 0, 0]
    assert await ledger.budget_totals("budget:team:t1:2026-11") == (0, 0)
    states = admitted(await ledger.admit("y", passing, LEASE)).states
    assert [s.used for s in states] == [1, 100, 1, 100]


async def test_window_amounts_leave_once_window_s_has_passed(ledger: Ledger) -> None:
    check = rpm(2, window=0.6)
    admitted(await ledger.admit("a", [check], LEASE))
    admitted(await ledger.admit("b", [check], LEASE))
    result = refused(await ledger.admit("c", [check], LEASE))
    assert result.retry_after_s is not None and 0 < result.retry_after_s <= 0.6
    assert 0 < result.state.reset_s <= 0.6
    await asyncio.sleep(result.retry_after_s + 0.02)
    admitted(await ledger.admit("c", [check], LEASE))
    await asyncio.sleep(0.65)
    assert await ledger.read([check]) == (CounterState(2, 0, 0.0),)


async def test_an_amount_is_counted_until_window_s_after_its_admission_and_not_much_longer(
        ledger: Ledger) -> None:
    """Real time, so the bounds carry margins: the server's admission time lies between the
    client's clock readings around the call, and so does its read."""
    window, clock = 0.6, asyncio.get_running_loop().time
    for attempt in range(3):
        check = tpm(1000, 10, window=window, counter=f"tpm:edge:{attempt}")
        before = clock()
        admitted(await ledger.admit(f"a{attempt}", [check], LEASE))
        after = clock()
        await asyncio.sleep(before + window - 0.04 - clock())
        used = (await ledger.read([check]))[0].used
        if clock() < before + window:  # the read surely ran before the amount may leave
            assert used == 10
            await asyncio.sleep(after + window + window / SLOTS + 0.02 - clock())
            assert (await ledger.read([check]))[0].used == 0
            return
    pytest.fail("the machine was too slow to read within 40 ms three times")


async def test_tokens_settle_sets_the_amount_to_actual_tokens_and_release_removes_it(ledger: Ledger) -> None:
    check = tpm(1000, 600)
    admitted(await ledger.admit("a", [check], LEASE))
    refused(await ledger.admit("b", [check], LEASE))
    await ledger.settle("a", [check], tokens=100, cost=0)
    assert (await ledger.read([check]))[0].used == 100
    assert admitted(await ledger.admit("b", [check], LEASE)).states[0].used == 700
    await ledger.release("b", [check])
    assert (await ledger.read([check]))[0].used == 100
    admitted(await ledger.admit("c", [check], LEASE))
    await ledger.settle("c", [check], tokens=800, cost=0)  # more than reserved: the truth wins
    assert (await ledger.read([check]))[0].used == 900


async def test_requests_amounts_stay_after_settle_but_go_on_release(ledger: Ledger) -> None:
    check = rpm(2)
    admitted(await ledger.admit("a", [check], LEASE))
    await ledger.settle("a", [check], tokens=5, cost=0)
    admitted(await ledger.admit("b", [check], LEASE))
    assert (await ledger.read([check]))[0].used == 2
    await ledger.release("b", [check])
    assert (await ledger.read([check]))[0].used == 1
    admitted(await ledger.admit("c", [check], LEASE))
    refused(await ledger.admit("d", [check], LEASE))


async def test_settle_and_release_correct_the_admissions_own_slot_not_the_current_one(
        ledger: Ledger) -> None:
    tokens, requests = tpm(1000, 100, window=0.6), rpm(10, window=0.6)
    admitted(await ledger.admit("a", [tokens, requests], LEASE))
    admitted(await ledger.admit("r", [tokens, requests], LEASE))
    await asyncio.sleep(0.3)
    admitted(await ledger.admit("b", [tokens, requests], LEASE))
    await ledger.settle("a", [tokens, requests], tokens=10, cost=0)
    await ledger.release("r", [tokens, requests])
    assert [s.used for s in await ledger.read([tokens, requests])] == [110, 2]
    await asyncio.sleep(0.4)  # a's and r's slot has left (> 0.61 s), b's has not (< 0.9 s)
    assert [s.used for s in await ledger.read([tokens, requests])] == [100, 1]


async def test_settle_and_release_after_the_slot_left_the_window_change_nothing(ledger: Ledger) -> None:
    tokens, requests = tpm(1000, 100, window=0.6), rpm(10, window=0.6)
    admitted(await ledger.admit("a", [tokens, requests], LEASE))
    admitted(await ledger.admit("b", [tokens, requests], LEASE))
    await asyncio.sleep(0.65)
    admitted(await ledger.admit("c", [tokens, requests], LEASE))
    await ledger.settle("a", [tokens, requests], tokens=900, cost=0)
    await ledger.release("b", [tokens, requests])
    assert [s.used for s in await ledger.read([tokens, requests])] == [100, 1]
    await ledger.settle("c", [tokens, requests], tokens=40, cost=0)  # c's slot is live
    assert [s.used for s in await ledger.read([tokens, requests])] == [40, 1]


async def test_a_window_idle_for_one_or_many_windows_starts_over(ledger: Ledger) -> None:
    check = rpm(3, window=0.06)  # 1 ms slots: an idle of 0.3 s skips 300 of them
    for rid in "abc":
        admitted(await ledger.admit(rid, [check], LEASE))
    refused(await ledger.admit("d", [check], LEASE))
    await asyncio.sleep(0.09)
    assert admitted(await ledger.admit("d", [check], LEASE)).states[0].used == 1
    await asyncio.sleep(0.3)
    assert admitted(await ledger.admit("e", [check], LEASE)).states[0].used == 1
    assert admitted(await ledger.admit("f", [check], LEASE)).states[0].used == 2


async def test_concurrency_slots_are_freed_by_settle_and_by_release(ledger: Ledger) -> None:
    check = slots(1)
    admitted(await ledger.admit("a", [check], LEASE))
    refused(await ledger.admit("b", [check], LEASE))
    await ledger.settle("a", [check], tokens=1, cost=0)
    admitted(await ledger.admit("b", [check], LEASE))
    await ledger.release("b", [check])
    assert (await ledger.read([check]))[0].used == 0
    admitted(await ledger.admit("c", [check], LEASE))


async def test_expired_leases_free_slots_and_drop_reservations_uncharged(ledger: Ledger) -> None:
    checks = [slots(1), budget(1000, 600)]
    admitted(await ledger.admit("a", checks, 0.3))
    result = refused(await ledger.admit("b", checks, 0.3))
    assert result.index == 0 and result.retry_after_s is not None and 0 < result.retry_after_s <= 0.3
    await asyncio.sleep(result.retry_after_s + 0.05)
    assert await ledger.budget_totals("budget:team:t1:2026-11") == (0, 0)
    admitted(await ledger.admit("b", checks, LEASE))
    # A late settle still charges what "a" really cost, and frees nothing that "b" holds.
    await ledger.settle("a", checks, tokens=10, cost=250)
    assert await ledger.budget_totals("budget:team:t1:2026-11") == (250, 600)
    assert (await ledger.read(checks))[0].used == 1


async def test_a_hard_budget_refuses_but_a_soft_one_admits_and_reports_the_overrun(ledger: Ledger) -> None:
    hard = budget(100, 60, counter="budget:key:hard")
    soft = budget(100, 60, hard=False, counter="budget:team:soft")
    assert admitted(await ledger.admit("a", [soft, hard], LEASE)).over_soft == ()
    assert refused(await ledger.admit("b", [soft, hard], LEASE)).index == 1
    second = admitted(await ledger.admit("c", [budget(100, 60, counter="budget:key:other"), soft], LEASE))
    assert second.over_soft == (1,)
    assert second.states[1] == CounterState(100, 120, 3600.0)
    assert await ledger.budget_totals("budget:team:soft") == (0, 120)


async def test_budget_settles_move_actual_costs_to_spent_and_reserved_returns_to_zero(ledger: Ledger) -> None:
    check = budget(10**12, 1000)
    results = await asyncio.gather(*(ledger.admit(f"r{i}", [check], LEASE) for i in range(200)))
    assert all(isinstance(r, Admitted) for r in results)
    assert await ledger.budget_totals(check.counter) == (0, 200 * 1000)
    costs = {f"r{i}": (i * 37) % 1001 for i in range(0, 200, 2)}
    await asyncio.gather(*(ledger.settle(rid, [check], tokens=1, cost=cost) for rid, cost in costs.items()),
                         *(ledger.release(f"r{i}", [check]) for i in range(1, 200, 2)))
    assert await ledger.budget_totals(check.counter) == (sum(costs.values()), 0)


async def test_settle_and_release_are_idempotent_and_only_the_first_one_acts(ledger: Ledger) -> None:
    checks = [rpm(10), tpm(1000, 500), slots(3), budget(10_000, 900)]

    async def totals() -> tuple[list[int], tuple[int, int]]:
        return ([s.used for s in await ledger.read(checks)],
                await ledger.budget_totals("budget:team:t1:2026-11"))

    admitted(await ledger.admit("a", checks, LEASE))
    await ledger.settle("a", checks, tokens=40, cost=70)
    assert await totals() == ([1, 40, 0, 70], (70, 0))
    await ledger.settle("a", checks, tokens=999, cost=999)
    await ledger.release("a", checks)
    assert await totals() == ([1, 40, 0, 70], (70, 0))
    admitted(await ledger.admit("b", checks, LEASE))
    await ledger.release("b", checks)
    await ledger.release("b", checks)
    await ledger.settle("b", checks, tokens=5, cost=5)
    assert await totals() == ([1, 40, 0, 70], (70, 0))


async def test_read_reserves_nothing(ledger: Ledger) -> None:
    checks = [rpm(2), tpm(20, 10), slots(2), budget(20, 10)]
    for _ in range(5):
        assert [s.used for s in await ledger.read(checks)] == [0, 0, 0, 0]
    admitted(await ledger.admit("a", checks, LEASE))
    admitted(await ledger.admit("b", checks, LEASE))
    assert [s.remaining for s in await ledger.read(checks)] == [0, 0, 0, 0]


async def test_counter_states_report_used_and_when_each_counter_resets(ledger: Ledger) -> None:
    checks = [rpm(5), slots(4), budget(100, 10), budget(100, 10, ttl=None, counter="budget:key:forever")]
    states = admitted(await ledger.admit("a", checks, LEASE)).states
    assert states[0] == CounterState(5, 1, 60.0)
    assert states[1].used == 1 and 0 < states[1].reset_s <= LEASE
    assert states[2] == CounterState(100, 10, 3600.0)
    assert states[3] == CounterState(100, 10, float("inf"))
    read = await ledger.read(checks)
    assert 59 < read[0].reset_s <= 60 and 3599 < read[2].reset_s <= 3600 and read[3].reset_s == float("inf")
    assert await ledger.read([rpm(5, counter="rpm:never-used")]) == (CounterState(5, 0, 0.0),)


async def test_an_open_request_id_cannot_be_admitted_twice_but_can_after_it_ends(ledger: Ledger) -> None:
    check = rpm(10)
    admitted(await ledger.admit("a", [check], LEASE))
    with pytest.raises(ValueError, match="already admitted"):
        await ledger.admit("a", [check], LEASE)
    await ledger.settle("a", [check], tokens=1, cost=0)
    admitted(await ledger.admit("a", [check], LEASE))
    assert (await ledger.read([check]))[0].used == 2  # two admissions count twice


async def test_integers_up_to_2_53_stay_exact(ledger: Ledger) -> None:
    big = 2**53 - 1
    first = admitted(await ledger.admit("a", [budget(big, 2**52 + 1)], LEASE))
    second = admitted(await ledger.admit("b", [budget(big, 2**52 - 3)], LEASE))
    assert (first.states[0].used, second.states[0].used) == (2**52 + 1, 2**53 - 2)
    refused(await ledger.admit("c", [budget(big, 2)], LEASE))
    await ledger.settle("a", [budget(big, 2**52 + 1)], tokens=1, cost=2**52 + 12345)
    await ledger.release("b", [budget(big, 2**52 - 3)])
    assert await ledger.budget_totals("budget:team:t1:2026-11") == (2**52 + 12345, 0)


OVERSHOOT = {
    "budget": (budget(37 * 1000, 1000), 37),
    "tokens": (tpm(37 * 250, 250), 37),
    "concurrency": (slots(37), 37),
}


@pytest.mark.parametrize("kind", OVERSHOOT)
async def test_500_concurrent_admits_never_overshoot_a_limit(ledger: Ledger, kind: str) -> None:
    check, fits = OVERSHOOT[kind]
    results = await asyncio.gather(*(ledger.admit(f"r{i}", [rpm(10_000), check], LEASE) for i in range(500)))
    assert sum(isinstance(r, Admitted) for r in results) == fits
    assert all(r.index == 1 for r in results if isinstance(r, Refused))
    assert (await ledger.read([rpm(10_000), check]))[1].used == check.limit
    assert (await ledger.read([rpm(10_000)]))[0].used == fits


CHILD = """
import asyncio, sys
from inferenceops.admission.ledger import Admitted, Check, CheckKind
from inferenceops.admission.redis_ledger import RedisLedger

url, prefix, tag = sys.argv[1:4]
attempts, limit, cost = map(int, sys.argv[4:7])
checks = [Check(CheckKind.CONCURRENCY, "conc:shared", 10_000, 1, "slots"),
          Check(CheckKind.BUDGET, "budget:shared", limit, cost, "budget", ttl_s=600)]

async def main():
    ledger = RedisLedger(url, prefix=prefix, timeout_s=5)
    try:
        results = await asyncio.gather(*(ledger.admit(f"{tag}-{i}", checks, 60) for i in range(attempts)))
    finally:
        await ledger.close()
    print(sum(isinstance(r, Admitted) for r in results), flush=True)

print("ready", flush=True)
sys.stdin.readline()
asyncio.run(main())
"""


async def test_two_processes_sharing_redis_admit_at_most_n_in_total(redis_prefix: str) -> None:
    fits, cost = 41, 1000
    children = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, REDIS_URL, redis_prefix, tag, "250", str(fits * cost), str(cost),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        for tag in ("p1", "p2")]
    try:
        async with asyncio.timeout(60):
            for child in children:
                assert child.stdout is not None
                assert (await child.stdout.readline()).strip() == b"ready"
            for child in children:  # both start together, so their admits interleave
                assert child.stdin is not None
                child.stdin.write(b"go\n")
                await child.stdin.drain()
            outputs = [await child.communicate() for child in children]
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert [child.returncode for child in children] == [0, 0], [err.decode() for _, err in outputs]
    assert sum(int(out) for out, _ in outputs) == fits
    ledger = RedisLedger(REDIS_URL, prefix=redis_prefix)
    try:
        assert await ledger.budget_totals("budget:shared") == (0, fits * cost)
    finally:
        await ledger.close()


def outcome(result: Admitted | Refused) -> tuple[object, ...]:
    """What must agree between ledgers (times differ by a few µs, so they are left out)."""
    if isinstance(result, Admitted):
        return ("admitted", tuple(s.used for s in result.states), result.over_soft)
    return ("refused", result.index, result.retry_after_s is None, result.state.used)


async def test_memory_and_redis_ledgers_agree_on_a_random_sequence_of_operations(redis_prefix: str) -> None:
    rng = random.Random(20261128)
    counters = [lambda: rpm(150), lambda: tpm(60_000, rng.randrange(0, 1500)), lambda: slots(6),
                lambda: budget(120_000, rng.randrange(0, 20_000)),
                lambda: budget(30_000, rng.randrange(0, 9_000), hard=False, counter="budget:key:soft"),
                lambda: budget(40_000, rng.randrange(0, 9_000), ttl=None, counter="budget:key:forever")]
    memory, shared = MemoryLedger(), RedisLedger(REDIS_URL, prefix=redis_prefix)
    both: tuple[Ledger, Ledger] = (memory, shared)
    open_requests: dict[str, list[Check]] = {}
    closed: list[tuple[str, list[Check]]] = []
    try:
        for step in range(600):
            roll = rng.random()
            if roll < 0.55 or not open_requests:
                checks = [make() for make in rng.sample(counters, rng.randrange(1, len(counters) + 1))]
                results = [await ledger.admit(f"q{step}", checks, LEASE) for ledger in both]
                assert outcome(results[0]) == outcome(results[1]), (step, checks)
                if isinstance(results[0], Admitted):
                    open_requests[f"q{step}"] = checks
            elif roll < 0.95:
                rid = rng.choice(sorted(open_requests))
                checks = open_requests.pop(rid)
                closed.append((rid, checks))
                tokens, cost = rng.randrange(0, 2000), rng.randrange(0, 1000)
                for ledger in both:
                    if roll < 0.8:
                        await ledger.settle(rid, checks, tokens, cost)
                    else:
                        await ledger.release(rid, checks)
            else:  # a repeat of a finished request must change nothing in either
                rid, checks = rng.choice(closed) if closed else ("none", [])
                for ledger in both:
                    await ledger.settle(rid, checks, 1, 1)
            everything = [make() for make in counters]
            reads = [[s.used for s in await ledger.read(everything)] for ledger in both]
            assert reads[0] == reads[1], step
            for name in ("budget:team:t1:2026-11", "budget:key:soft", "budget:key:forever"):
                assert await memory.budget_totals(name) == await shared.budget_totals(name), (step, name)
    finally:
        await shared.close()


async def test_an_unreachable_redis_raises_ledger_unavailable_and_never_hangs() -> None:
    ledger = RedisLedger("redis://127.0.0.1:1/0", timeout_s=0.5)
    try:
        async with asyncio.timeout(2):
            with pytest.raises(LedgerUnavailable, match="admit"):
                await ledger.admit("a", [rpm(1)], LEASE)
            with pytest.raises(LedgerUnavailable, match="settle"):
                await ledger.settle("a", [rpm(1)], tokens=1, cost=1)
            with pytest.raises(LedgerUnavailable, match="read"):
                await ledger.read([rpm(1)])
    finally:
        await ledger.close()


async def test_every_redis_key_expires_except_the_spent_of_a_budget_without_ttl(redis_prefix: str) -> None:
    ledger = RedisLedger(REDIS_URL, prefix=redis_prefix)
    checks = [rpm(5), tpm(100, 10), slots(5), budget(100, 10), budget(100, 10, ttl=None, counter="b:forever")]
    try:
        admitted(await ledger.admit("a", checks, LEASE))
        admitted(await ledger.admit("b", checks, LEASE))
        await ledger.settle("a", checks, tokens=3, cost=4)
        await ledger.beat()  # an instance's new lease set gets its TTL with the next heartbeat
    finally:
        await ledger.close()
    client = raw_redis()
    try:
        keys = sorted([key.decode() async for key in client.scan_iter(match="{" + redis_prefix + "}:*")])
        ttls = {key: await client.pttl(key) for key in keys}
    finally:
        await client.aclose()
    # One hash per window, z+h per lease counter, two spent keys, b's open ticket (a's is gone),
    # and the instance's heartbeat, its lease set and the registry (and, for a second after a
    # walk of the registry, the "walked recently" flag).
    base, instance = "{" + redis_prefix + "}", ledger.instance_id
    assert len([key for key in keys if key != f"{base}:live"]) == 2 + 2 * 3 + 2 + 1 + 3, keys
    assert [key for key in keys if ":q:" in key] == [f"{base}:q:b"]
    assert {f"{base}:i:{instance}", f"{base}:o:{instance}", f"{base}:instances"} <= set(keys)
    persistent = [key for key, ttl in ttls.items() if ttl < 0]
    assert persistent == ["{" + redis_prefix + "}:b:b:forever:s"], ttls


async def test_redis_holds_a_bounded_hash_per_window_and_nothing_per_settled_request(
        redis_prefix: str) -> None:
    ledger = RedisLedger(REDIS_URL, prefix=redis_prefix)
    checks = [rpm(10**9, window=0.3), tpm(10**12, 50, window=0.3), slots(1000), budget(10**12, 5)]
    windows = ["{" + redis_prefix + "}:r:rpm:key:k1:w", "{" + redis_prefix + "}:t:tpm:team:t1:w"]
    client = raw_redis()
    clock = asyncio.get_running_loop().time
    started, batch, fields = clock(), 0, []

    async def one(rid: str) -> None:
        admitted(await ledger.admit(rid, checks, LEASE))
        await ledger.settle(rid, checks, tokens=7, cost=1)

    try:
        while clock() - started < 0.8:  # the window (5 ms slots) turns over more than twice
            await asyncio.gather(*(one(f"r{batch}-{i}") for i in range(40)))
            fields += [await client.hlen(key) for key in windows]
            batch += 1
        keys = sorted([key.decode() async for key in client.scan_iter(match="{" + redis_prefix + "}:*")])
    finally:
        await client.aclose()
        await ledger.close()
    assert batch >= 5 and max(fields) <= SLOTS + 3, (batch, max(fields))
    assert not [key for key in keys if ":q:" in key]  # no ticket outlives its settle
    base = "{" + redis_prefix + "}"
    per_instance = {f"{base}:i:{ledger.instance_id}", f"{base}:instances", f"{base}:live"}
    assert set(keys) <= {*windows, f"{base}:c:conc:key:k1:h", f"{base}:b:budget:team:t1:2026-11:h",
                         f"{base}:b:budget:team:t1:2026-11:s", *per_instance}, keys


async def test_redis_windows_on_the_server_clock_never_forget_early_nor_admit_past_the_limit(
        redis_prefix: str) -> None:
    """The injected-clock properties below, on the server's clock: each ticket holds its
    admission's server time (µs), against which the exact log is kept."""
    rng = random.Random(11)
    ledger = RedisLedger(REDIS_URL, prefix=redis_prefix)
    client = raw_redis()
    window_us, limit = 300_000, 5_000
    slot_us = window_us // SLOTS
    log: list[tuple[int, int]] = []
    clock = asyncio.get_running_loop().time
    started, step, refusals = clock(), 0, 0
    try:
        while clock() - started < 1.0:
            check = tpm(limit, rng.randrange(0, 200), window=window_us / 1e6)
            result = await ledger.admit(f"q{step}", [check], LEASE)
            if isinstance(result, Admitted):
                at = int(await client.get("{" + redis_prefix + "}:q:" + f"q{step}"))
                log.append((at, check.amount))
                exact = sum(amount for t, amount in log if t > at - window_us)
                loose = sum(amount for t, amount in log if t > at - window_us - slot_us)
                assert exact <= limit and exact <= result.states[0].used <= loose, step
                await ledger.settle(f"q{step}", [check], tokens=check.amount, cost=0)
            else:
                refusals += 1
            step += 1
            if rng.random() < 0.1:
                await asyncio.sleep(rng.random() * 0.03)
    finally:
        await client.aclose()
        await ledger.close()
    assert len(log) > 50 and refusals > 10, (len(log), refusals)

def test_the_script_and_the_memory_ledger_use_the_same_number_of_slots() -> None:
    assert f"local SLOTS = {SLOTS} ".encode() in SCRIPT


async def test_a_flushed_script_cache_is_reloaded_transparently(redis_prefix: str) -> None:
    ledger = RedisLedger(REDIS_URL, prefix=redis_prefix)
    client = raw_redis()
    try:
        admitted(await ledger.admit("a", [rpm(5)], LEASE))
        await client.script_flush()
        assert admitted(await ledger.admit("b", [rpm(5)], LEASE)).states[0].used == 2
    finally:
        await client.aclose()
        await ledger.close()


async def test_a_redis_error_surfaces_as_ledger_unavailable(redis_prefix: str) -> None:
    ledger = RedisLedger(REDIS_URL, prefix=redis_prefix)
    client = raw_redis()
    try:
        await client.set("{" + redis_prefix + "}:r:rpm:key:k1:w", "not a hash")
        with pytest.raises(LedgerUnavailable, match="redis ledger admit failed"):
            await ledger.admit("a", [rpm(5)], LEASE)
    finally:
        await client.aclose()
        await ledger.close()


async def test_the_memory_ledger_sweeps_idle_counters_and_stale_tickets() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    for i in range(500):  # never settled: their tickets go stale too
        checks = [rpm(5, window=1, counter=f"rpm:{i}"), slots(1, counter=f"c:{i}"),
                  budget(10, 1, ttl=5, counter=f"b:{i}")]
        admitted(await ledger.admit(f"r{i}", checks, lease_s=2))
    assert ledger.counters() == 4 * 500
    now[0] += 60
    for i in range(100):
        admitted(await ledger.admit(f"s{i}", [rpm(1000, counter="rpm:live")], lease_s=2))
        await ledger.settle(f"s{i}", [rpm(1000, counter="rpm:live")], tokens=1, cost=0)
    assert ledger.counters() <= 1


async def test_the_memory_ledger_holds_at_most_slots_plus_one_per_window_and_nothing_per_settled_request(
        ) -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    checks = [rpm(10**9), tpm(10**12, 500), slots(100), budget(10**15, 9)]
    most = 0
    for i in range(100_000):  # 1,000 a second for 100 s: the 60 s window turns over
        now[0] += 0.001
        admitted(await ledger.admit(f"r{i}", checks, LEASE))
        await ledger.settle(f"r{i}", checks, tokens=100, cost=3)
        if i % 1000 == 0:
            most = max(most, ledger.entries())
    assert most <= 2 * (SLOTS + 1)  # two windows' slots; no lease, no ticket
    requests, tokens = (s.used for s in (await ledger.read(checks))[:2])
    assert 60_000 <= requests <= 61_000 and tokens == 100 * requests  # the last 60 s, + 1 slot at most


async def test_the_memory_ledger_on_a_clock_never_forgets_early_admits_within_the_limit_and_retries_exactly(
        ) -> None:
    """Random admissions on an injected clock, against the exact log they stand for:
    the window counts at least the last window_s of admissions and at most one slot more;
    no window_s ever admits more than the limit; retry_after_s is exact."""
    rng = random.Random(7)
    now = [5000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    window, limit = 60.0, 5_000
    log: list[tuple[float, int]] = []

    def admitted_since(t: float) -> int:
        return sum(amount for at, amount in log if at > t)

    for step in range(4000):
        jump = rng.random() < 0.3
        now[0] += rng.choice([0.001, 0.05, 0.3, 1.0, 7.0, 200.0]) if jump else rng.random() * 0.2
        check = tpm(limit, rng.randrange(0, 400), window=window)
        result = await ledger.admit(f"q{step}", [check], LEASE)
        if isinstance(result, Admitted):
            log.append((now[0], check.amount))
            assert admitted_since(now[0] - window) <= limit
            used = result.states[0].used
        else:
            used = result.state.used
            assert result.retry_after_s is not None and 0 < result.retry_after_s <= window * (1 + 1 / SLOTS)
            probe = copy.deepcopy(ledger)  # shares the clock
            saved = now[0]
            now[0] = saved + result.retry_after_s - 1e-6
            assert isinstance(await probe.admit("probe", [check], LEASE), Refused), step
            probe = copy.deepcopy(ledger)
            now[0] = saved + result.retry_after_s + 1e-9
            assert isinstance(await probe.admit("probe", [check], LEASE), Admitted), step
            now[0] = saved
        assert admitted_since(now[0] - window) <= used <= admitted_since(now[0] - window - window / SLOTS)
        await ledger.settle(f"q{step}", [check], tokens=check.amount, cost=0)
        assert ledger.entries() <= SLOTS + 1
