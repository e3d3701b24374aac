"""Leases tied to a live instance: a dead gateway's slots are freed within seconds, exactly once.

Against the real Redis at 127.0.0.1:6379 (``INFERENCEOPS_TEST_REDIS_URL``
overrides), each test under a prefix of its own, deleted afterwards; skipped,
with the reason, when no server answers. Heartbeats are a tenth of a second
(TTL 0.3 s) where death is the point; a death is a heartbeat that stops (its key
expires) or a heartbeat key deleted by hand (what the TTL does, at once). Waits
poll a condition with a deadline; none asserts a duration.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from inferenceops.admission.instance import InstanceHeartbeat, Liveness, instance_heartbeat
from inferenceops.admission.ledger import (
    Admitted,
    Check,
    CheckKind,
    HeartbeatLost,
    LedgerUnavailable,
    Refused,
)
from inferenceops.admission.metrics import AdmissionMetrics
from inferenceops.admission.redis_ledger import RedisLedger
from inferenceops.app import build_admission, build_state
from inferenceops.config.spec import load_platform
from inferenceops.platform import Identity, KeyHasher
from inferenceops.settings import Settings
from inferenceops.supervisor import Supervisor

REDIS_URL = os.environ.get("INFERENCEOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
FAST = Liveness(interval_s=0.1, ttl_s=0.3)
SHORT = Liveness(interval_s=0.5, ttl_s=1.0)  # short, with room for a loaded machine's stalls
LONG = Liveness(interval_s=30.0, ttl_s=60.0)  # never lapses within a test
WATCHER = Liveness(interval_s=0.1, ttl_s=0.3, check_s=0)  # looks for dead instances on every call
LEASE = 600.0  # far longer than any test: only liveness can free these leases
BUDGET = "bud:team:t1:2026-12"


def slot(limit: int = 1) -> Check:
    # A name with spaces: tickets must still name the counter exactly.
    return Check(CheckKind.CONCURRENCY, "con:team_model:t1/my model", limit, 1, "concurrency")


def reservation(amount: int, limit: int = 100) -> Check:
    return Check(CheckKind.BUDGET, BUDGET, limit, amount, "budget", ttl_s=3600.0)


def rpm(limit: int = 1000) -> Check:
    return Check(CheckKind.REQUESTS, "rpm:team:t1", limit, 1, "requests")


def raw_redis() -> Redis:
    return Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2,
                          retry=Retry(NoBackoff(), 0))


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    client = raw_redis()
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        await client.aclose()
        pytest.skip(f"no Redis server answers at {REDIS_URL} ({type(error).__name__}: {error})")
    name = f"test-instance-{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        keys = [key async for key in client.scan_iter(match="{" + name + "}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def ledgers(prefix: str) -> AsyncIterator[Callable[..., RedisLedger]]:
    made: list[RedisLedger] = []

    def make(liveness: Liveness = FAST, url: str = REDIS_URL) -> RedisLedger:
        ledger = RedisLedger(url, prefix=prefix, liveness=liveness, timeout_s=2.0)
        made.append(ledger)
        return ledger

    yield make
    for ledger in made:
        await ledger.close()


async def kill(ledger: RedisLedger, prefix: str) -> None:
    """What a kill -9 leads to once the TTL has passed: the heartbeat key is gone."""
    client = raw_redis()
    try:
        assert await client.delete("{" + prefix + "}:i:" + ledger.instance_id) == 1
    finally:
        await client.aclose()


async def eventually(condition: Callable[[], Awaitable[bool]], within_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"not within {within_s} s"
        await asyncio.sleep(0.02)


def admitted(result: Admitted | Refused) -> Admitted:
    assert isinstance(result, Admitted), result
    return result


# Settings --------------------------------------------------------------------------------


def test_liveness_needs_a_positive_interval_and_a_ttl_that_survives_one_lost_heartbeat() -> None:
    assert Liveness().freed_within_s == 7.0
    assert Liveness(1.0, 2.0).check_every_s == 0.5 and Liveness(1.0, 2.0, check_s=0).check_every_s == 0
    for interval, ttl in ((0.0, 1.0), (-1.0, 1.0), (1.0, 1.9)):
        with pytest.raises(ValueError):
            Liveness(interval, ttl)
    with pytest.raises(ValueError):
        Liveness(1.0, 2.0, check_s=-1)


def test_the_settings_default_to_2_s_and_6_s_and_never_allow_more_than_15_s_to_free_slots() -> None:
    settings = Settings()
    assert (settings.admission_heartbeat_s, settings.admission_heartbeat_ttl_s) == (2.0, 6.0)
    fields = Settings.model_fields
    slowest = Liveness(fields["admission_heartbeat_s"].metadata[-1].le,
                       fields["admission_heartbeat_ttl_s"].metadata[-1].le)
    assert slowest.freed_within_s <= 15.0
    with pytest.raises(ValidationError, match="at least twice"):
        Settings(admission_heartbeat_s=3.0, admission_heartbeat_ttl_s=5.0)
    with pytest.raises(ValidationError):
        Settings(admission_heartbeat_ttl_s=11.0)


def test_only_a_shared_ledger_gets_a_heartbeat_configured_by_the_settings() -> None:
    assert instance_heartbeat(build_admission(Settings())) is None
    admission = build_admission(Settings(redis_url=REDIS_URL, admission_heartbeat_s=0.5,
                                         admission_heartbeat_ttl_s=2.0))
    ledger = admission.ledger
    assert isinstance(ledger, RedisLedger) and ledger.liveness == Liveness(0.5, 2.0)
    assert isinstance(instance_heartbeat(admission), InstanceHeartbeat)


def test_every_ledger_object_is_a_new_instance() -> None:
    ids = {RedisLedger(REDIS_URL).instance_id for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


# Death -----------------------------------------------------------------------------------


async def test_a_dead_instances_slot_is_taken_by_another_within_the_ttl_and_its_late_finish_frees_nothing(
        ledgers: Callable[..., RedisLedger], prefix: str) -> None:
    a, b = ledgers(SHORT), ledgers()  # b is also what a restarted process is: a new instance
    a.supervise()
    await a.beat()
    admitted(await a.admit("a-1", [slot(2), reservation(30)], LEASE))
    admitted(await a.admit("a-2", [slot(2), reservation(30)], LEASE))
    # a dies: its heartbeat is not renewed. Until its key expires the slots stay held.
    refused = await b.admit("b-1", [slot(2), reservation(30)], LEASE)
    assert isinstance(refused, Refused) and refused.index == 0

    async def b_got_in() -> bool:
        return isinstance(await b.admit("b-1", [slot(2), reservation(30)], LEASE), Admitted)

    await eventually(b_got_in, within_s=5 * SHORT.freed_within_s)
    admitted(await b.admit("b-2", [slot(2), reservation(30)], LEASE))
    assert (await b.read([slot(2)]))[0].used == 2
    assert await b.budget_totals(BUDGET) == (0, 60)  # a's reservations dropped, uncharged
    # a was only cut off (a partition): its late finishes free nothing of b's...
    await a.release("a-1", [slot(2), reservation(30)])
    await a.settle("a-2", [slot(2), reservation(30)], tokens=10, cost=7)
    assert (await b.read([slot(2)]))[0].used == 2
    # ...and record what a-2 really cost, once.
    assert await b.budget_totals(BUDGET) == (7, 60)
    await a.settle("a-2", [slot(2), reservation(30)], tokens=10, cost=7)
    await b.settle("b-1", [slot(2), reservation(30)], tokens=1, cost=5)
    await b.release("b-2", [slot(2), reservation(30)])
    assert (await b.read([slot(2)]))[0].used == 0
    assert await b.budget_totals(BUDGET) == (12, 0)


async def test_a_lapsed_instance_refuses_leases_until_a_heartbeat_gets_through_again(
        ledgers: Callable[..., RedisLedger], prefix: str) -> None:
    a, watcher = ledgers(SHORT), ledgers(WATCHER)
    a.supervise()
    with pytest.raises(HeartbeatLost, match=a.instance_id):  # never beaten yet
        await a.admit("r0", [slot()], LEASE)
    assert issubclass(HeartbeatLost, LedgerUnavailable)  # the fail-open/closed policy applies
    await a.beat()
    admitted(await a.admit("r1", [slot(5)], LEASE))
    await kill(a, prefix)  # partitioned for longer than the TTL: Redis forgot a
    assert (await watcher.read([slot(5)]))[0].used == 0  # its in-flight slot is freed early

    async def lapsed() -> bool:
        return not a.live

    await eventually(lapsed, within_s=10 * SHORT.ttl_s)
    with pytest.raises(HeartbeatLost):
        await a.admit("r2", [slot(5)], LEASE)
    admitted(await a.admit("r3", [rpm()], LEASE))  # nothing leased: nothing to protect
    await a.beat()  # back: the same instance again, with nothing of what was freed
    admitted(await a.admit("r2", [slot(5)], LEASE))
    await a.settle("r1", [slot(5)], tokens=1, cost=0)
    assert (await watcher.read([slot(5)]))[0].used == 1


async def test_redis_forgetting_a_live_instance_costs_one_heartbeat_and_one_retry(
        ledgers: Callable[..., RedisLedger], prefix: str) -> None:
    a = ledgers(LONG)
    a.supervise()
    await a.beat()
    admitted(await a.admit("r1", [slot(5)], LEASE))
    await kill(a, prefix)  # Redis restarted or failed over without the key; a beat recently
    assert a.live
    admitted(await a.admit("r2", [slot(5)], LEASE))
    client = raw_redis()
    try:
        assert await client.exists("{" + prefix + "}:i:" + a.instance_id) == 1
    finally:
        await client.aclose()


async def test_an_unsupervised_ledger_registers_itself_before_its_first_lease(
        ledgers: Callable[..., RedisLedger]) -> None:
    a = ledgers()
    assert not a.live
    admitted(await a.admit("r1", [slot()], LEASE))
    assert a.live


async def test_a_dead_instance_with_many_leases_is_freed_a_bounded_batch_per_call(
        ledgers: Callable[..., RedisLedger], prefix: str) -> None:
    a = ledgers(Liveness(interval_s=30, ttl_s=60, check_s=0.05))
    watcher = ledgers(Liveness(interval_s=30, ttl_s=60, check_s=60))  # walks once a minute...
    await asyncio.gather(*(a.admit(f"r{i}", [slot(1000), reservation(1, 10**6)], LEASE)
                           for i in range(250)))
    await kill(a, prefix)
    client = raw_redis()

    async def no_walk_for_a_while() -> bool:  # a's own admissions marked the registry walked
        return await client.exists("{" + prefix + "}:live") == 0

    try:
        await eventually(no_walk_for_a_while, within_s=5.0)
    finally:
        await client.aclose()
    # ...but a walk that had more to free than one call may (the script's REAP: 100) leaves
    # the registry unmarked, so the very next call goes on.
    assert [(await watcher.read([slot(1000)]))[0].used for _ in range(4)] == [150, 50, 0, 0]
    assert await watcher.budget_totals(BUDGET) == (0, 0)


async def test_a_live_instances_expired_leases_leave_its_lease_set(
        ledgers: Callable[..., RedisLedger], prefix: str) -> None:
    a, watcher = ledgers(LONG), ledgers(WATCHER)
    admitted(await a.admit("leaked", [slot()], 0.2))  # never settled: a lost settle
    client = raw_redis()

    async def gone() -> bool:
        await watcher.read([slot()])
        return await client.exists("{" + prefix + "}:o:" + a.instance_id) == 0

    try:
        await eventually(gone, within_s=5.0)
    finally:
        await client.aclose()
    assert (await watcher.read([slot()]))[0].used == 0


# The heartbeat task ----------------------------------------------------------------------


async def test_the_heartbeat_keeps_an_instance_live_and_a_graceful_stop_frees_its_leases_at_once(
        ledgers: Callable[..., RedisLedger]) -> None:
    a, watcher = ledgers(Liveness(interval_s=0.2, ttl_s=0.8)), ledgers(WATCHER)
    heartbeat = InstanceHeartbeat(a)
    supervisor = Supervisor()
    supervisor.add(heartbeat)
    await supervisor.start()
    try:
        assert heartbeat.beats == 1  # registered before start returns
        admitted(await a.admit("r1", [slot()], LEASE))

        async def several_ttls() -> bool:
            return heartbeat.beats >= 10  # 1.8 s of beats: more than twice the TTL

        await eventually(several_ttls, within_s=30.0)
        assert (await watcher.read([slot()]))[0].used == 1  # alive: never freed
        admitted(await a.admit("r2", [slot(2)], LEASE))
    finally:
        await supervisor.stop()
    assert not a.live
    assert (await watcher.read([slot(2)]))[0].used == 0


async def test_heartbeat_failures_are_counted_and_logged_never_raised(
        ledgers: Callable[..., RedisLedger], caplog: pytest.LogCaptureFixture) -> None:
    a = ledgers(url="redis://127.0.0.1:1/0")  # nothing listens there
    metrics = AdmissionMetrics()
    heartbeat = InstanceHeartbeat(a, metrics)
    supervisor = Supervisor()
    supervisor.add(heartbeat)
    with caplog.at_level(logging.WARNING, logger="inferenceops.admission.instance"):
        await supervisor.start()
        try:
            async def failed_twice() -> bool:
                return metrics.heartbeat_failures >= 2

            await eventually(failed_twice, within_s=30.0)
            with pytest.raises(HeartbeatLost):
                await a.admit("r1", [slot()], LEASE)
        finally:
            await supervisor.stop()
    assert heartbeat.beats == 0
    messages = [record.getMessage() for record in caplog.records]
    assert sum("heartbeat of admission instance" in m and "failed" in m for m in messages) == 1
    assert sum("has not reached Redis" in m for m in messages) == 1
    assert any("could not remove the heartbeat" in m for m in messages)
    assert "inferenceops_admission_heartbeat_failures_total" in metrics.render({})


async def test_the_gateway_state_registers_its_instance_at_start_and_leaves_at_stop(
        prefix: str) -> None:
    settings = Settings(redis_url=REDIS_URL, admission_heartbeat_s=0.5,
                        admission_heartbeat_ttl_s=2.0)
    platform = load_platform(None, loopback_base_url="http://127.0.0.1:1")
    state = build_state(settings, platform, KeyHasher(b"k" * 32), Identity([], {}))
    assert state.admission is not None
    ledger = state.admission.ledger
    assert isinstance(ledger, RedisLedger)
    assert state.supervisor.names == ("admission-heartbeat",)
    (heartbeat,) = [s for s in state.supervisor.services if isinstance(s, InstanceHeartbeat)]
    client = raw_redis()
    key = "{inferenceops}:i:" + ledger.instance_id
    try:
        await state.start()
        try:
            assert await client.exists(key) == 1 and ledger.live and heartbeat.beats >= 1
        finally:
            await state.stop()
        assert await client.exists(key) == 0
    finally:
        await client.aclose()
