"""``RedisLedger`` on the wire: its settings, its calls, and how long its keys live in Redis.

``test_ledger`` holds the semantics (against the real server) and
``test_redis_ledger_probe`` the failures of an unreachable one; these pin what
mutmut found loose (``make mutation``):

* refused before anything is sent: a prefix that is empty or has a brace (it
  becomes the hash tag), an amount or limit Lua cannot count exactly (2**53 and
  up); an admission with no checks admits without a round trip;
* against a scripted server: the documented defaults (two connections, 0.5 s per
  call), one ``EVALSHA`` by the script's SHA per operation, the script loaded
  once when the server has forgotten it, and an instance the server still does not
  know right after a heartbeat refused with ``HeartbeatLost``;
* against the real server (skipped when none answers): the heartbeat, the
  "walked recently" flag and a ticket expire when they should and not later, and
  a refusal's retry hint is in seconds.
"""

from __future__ import annotations

import asyncio
import math
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from tests.support.fake_redis import Answer, FakeRedis, pong

from inferenceops.admission.instance import Liveness
from inferenceops.admission.ledger import (
    Admitted,
    Check,
    CheckKind,
    CounterState,
    HeartbeatLost,
    LedgerUnavailable,
    Refused,
)
from inferenceops.admission.memory_ledger import ticket_life_s
from inferenceops.admission.redis_ledger import EXACT_BOUND, SCRIPT, SCRIPT_SHA, RedisLedger

REDIS_URL = os.environ.get("INFERENCEOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NOWHERE = "redis://127.0.0.1:1/0"  # nobody listens: any call that goes out fails
SHA = SCRIPT_SHA.encode()


def requests(limit: int = 10, amount: int = 1, window: float = 60.0) -> Check:
    return Check(CheckKind.REQUESTS, "rpm:key:k1", limit, amount, "requests of k1", window_s=window)


def slots(limit: int = 10) -> Check:
    return Check(CheckKind.CONCURRENCY, "conc:key:k1", limit, 1, "concurrency of k1")


@pytest.fixture
async def ledgers() -> AsyncIterator[list[RedisLedger]]:
    """Ledgers made by a test are closed even when it fails."""
    made: list[RedisLedger] = []
    yield made
    for ledger in made:
        await ledger.close()


def ledger_at(ledgers: list[RedisLedger], url: str, **options: Any) -> RedisLedger:
    ledger = RedisLedger(url, **options)
    ledgers.append(ledger)
    return ledger


# -- refused before anything is sent -----------------------------------------------------------

@pytest.mark.parametrize("prefix", ["", "{", "}", "a{b", "a}b"])
def test_a_prefix_that_cannot_be_a_hash_tag_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError) as info:
        RedisLedger(NOWHERE, prefix=prefix)
    assert str(info.value) == f"prefix must be non-empty and brace-free (it becomes the hash tag): {prefix!r}"


@pytest.mark.parametrize(("limit", "amount"), [(EXACT_BOUND, 1), (10, EXACT_BOUND), (10, -1)])
async def test_amounts_and_limits_lua_cannot_count_exactly_are_refused_before_sending(
        ledgers: list[RedisLedger], limit: int, amount: int) -> None:
    ledger = ledger_at(ledgers, NOWHERE)
    with pytest.raises(ValueError) as info:
        await ledger.admit("r1", [requests(limit, amount)], 30.0)
    assert str(info.value) == "requests of k1: limit and amount must be in [0, 2**53)"


async def test_the_largest_exact_amounts_are_sent(ledgers: list[RedisLedger]) -> None:
    ledger = ledger_at(ledgers, NOWHERE, timeout_s=0.3)
    with pytest.raises(LedgerUnavailable) as info:  # it went out: only the unreachable server says no
        await ledger.admit("r1", [requests(EXACT_BOUND - 1, EXACT_BOUND - 1)], 30.0)
    assert str(info.value).startswith("redis ledger admit failed: Unavailable: ")


async def test_an_admission_with_no_checks_admits_without_a_round_trip(ledgers: list[RedisLedger]) -> None:
    assert await ledger_at(ledgers, NOWHERE).admit("r1", [], 30.0) == Admitted("r1", ())


# -- against a scripted server -----------------------------------------------------------------

@pytest.fixture
async def fake() -> AsyncIterator[FakeRedis]:
    server = FakeRedis()
    yield server
    await server.stop()


def operation(command: list[bytes]) -> bytes:
    """The ledger operation an ``EVALSHA`` carries: the first argument after its keys."""
    return command[3 + int(command[2])]


async def test_by_default_calls_spread_over_two_connections_and_more_when_asked(
        fake: FakeRedis, ledgers: list[RedisLedger]) -> None:
    url = await fake.start()
    default = ledger_at(ledgers, url)
    for _ in range(3):
        await default.ping()
    assert fake.connections == 2
    wider = ledger_at(ledgers, url, connections=3)
    for _ in range(3):
        await wider.ping()
    assert fake.connections == 2 + 3


@pytest.mark.parametrize(("options", "wait"), [({}, "0.5s"), ({"timeout_s": 0.2}, "0.2s")])
async def test_a_call_waits_half_a_second_for_its_reply_unless_told_otherwise(
        fake: FakeRedis, ledgers: list[RedisLedger], options: dict[str, float], wait: str) -> None:
    fake.answer = lambda command: None
    url = await fake.start()
    async with asyncio.timeout(5):
        with pytest.raises(LedgerUnavailable) as info:
            await ledger_at(ledgers, url, **options).ping()
    port = url.rsplit(":", 1)[1]
    assert str(info.value) == (f"redis ledger ping failed: Unavailable: no reply from "
                               f"127.0.0.1:{port} within {wait}")


async def test_each_operation_is_one_evalsha_and_a_forgotten_script_is_loaded_once(
        fake: FakeRedis, ledgers: list[RedisLedger]) -> None:
    loaded: list[bytes] = []

    def answer(command: list[bytes]) -> Answer:
        name = command[0].upper()
        if name == b"SCRIPT" and command[1].upper() == b"LOAD":
            loaded.append(command[2])
            return b"$40\r\n%b\r\n" % SHA
        if name == b"EVALSHA":
            if command[1] != SHA or not loaded:
                return b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
            return b"*2\r\n:4\r\n:1500000\r\n"  # used 4, resets in 1.5 s
        return pong(command)

    fake.answer = answer
    ledger = ledger_at(ledgers, await fake.start(), prefix="wire")
    check = requests()
    for _ in range(2):
        assert await ledger.read([check]) == (CounterState(10, 4, 1.5),)
    assert loaded == [SCRIPT]
    shapes = [(c[0].upper(), c[1] if c[0].upper() == b"EVALSHA" else c[1].upper()) for c in fake.commands]
    assert shapes == [(b"EVALSHA", SHA), (b"SCRIPT", b"LOAD"), (b"EVALSHA", SHA), (b"EVALSHA", SHA)]
    assert {operation(c) for c in fake.commands if c[0].upper() == b"EVALSHA"} == {b"read"}


async def test_an_instance_still_unknown_right_after_a_heartbeat_is_refused(
        fake: FakeRedis, ledgers: list[RedisLedger]) -> None:
    def answer(command: list[bytes]) -> Answer:
        if command[0].upper() != b"EVALSHA":
            return pong(command)
        return b":1\r\n" if operation(command) == b"beat" else b"*1\r\n:-2\r\n"  # admit: not live

    fake.answer = answer
    ledger = ledger_at(ledgers, await fake.start(), prefix="wire")
    with pytest.raises(HeartbeatLost) as info:
        await ledger.admit("r1", [slots()], 30.0)
    assert str(info.value) == (f"redis ledger admit: instance {ledger.instance_id} is not live "
                               "in Redis right after a heartbeat")
    assert [operation(c) for c in fake.commands] == [b"beat", b"admit", b"beat", b"admit"]


async def test_an_admission_retried_after_a_heartbeat_says_so_when_it_fails(
        fake: FakeRedis, ledgers: list[RedisLedger]) -> None:
    admits: list[bytes] = []

    def answer(command: list[bytes]) -> Answer:
        if command[0].upper() != b"EVALSHA":
            return pong(command)
        if operation(command) == b"beat":
            return b":1\r\n"
        admits.append(command[1])
        return b"*1\r\n:-2\r\n" if len(admits) == 1 else b"-ERR the server broke\r\n"

    fake.answer = answer
    ledger = ledger_at(ledgers, await fake.start(), prefix="wire")
    with pytest.raises(LedgerUnavailable) as info:
        await ledger.admit("r1", [slots()], 30.0)
    assert str(info.value) == "redis ledger admit failed: ReplyError: ERR the server broke"


# -- against the real server -------------------------------------------------------------------

def raw_redis() -> Redis:
    return Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0))


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, str]]:
    """The real server and a prefix of the test's own, whose keys are deleted afterwards."""
    raw = raw_redis()
    try:
        await raw.ping()
    except (RedisError, OSError) as error:
        await raw.aclose()
        pytest.skip(f"no Redis server answers at {REDIS_URL} ({type(error).__name__}: {error})")
    prefix = f"test-wire-{uuid.uuid4().hex[:12]}"
    try:
        yield raw, prefix
    finally:
        keys = [key async for key in raw.scan_iter(match="{" + prefix + "}:*", count=1000)]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()


async def test_the_heartbeat_the_walk_flag_and_a_ticket_expire_when_meant_to_and_not_later(
        redis: tuple[Redis, str], ledgers: list[RedisLedger]) -> None:
    raw, prefix = redis
    liveness = Liveness(interval_s=60.0, ttl_s=120.0, check_s=60.0)
    ledger = ledger_at(ledgers, REDIS_URL, prefix=prefix, liveness=liveness)
    checks = [requests(window=3600.0), slots()]
    assert isinstance(await ledger.admit("r1", checks, 30.0), Admitted)  # beats first: it takes a lease
    tag = "{" + prefix + "}"
    heartbeat = await raw.pttl(f"{tag}:i:{ledger.instance_id}")
    walked = await raw.pttl(f"{tag}:live")
    ticket = await raw.pttl(f"{tag}:q:r1")
    assert 110_000 < heartbeat <= 120_000
    assert 50_000 < walked <= 60_000
    life_ms = math.ceil(ticket_life_s(checks, 30.0) * 1000)  # 3660 s of window and slot, + margin
    assert life_ms - 10_000 < ticket <= life_ms


async def test_a_refusals_retry_hint_is_in_seconds(redis: tuple[Redis, str],
                                                   ledgers: list[RedisLedger]) -> None:
    _, prefix = redis
    ledger = ledger_at(ledgers, REDIS_URL, prefix=prefix)
    window = 10_000_000.0  # so long that a 1e-6 error in the unit is ten seconds
    assert isinstance(await ledger.admit("r1", [requests(1, window=window)], 30.0), Admitted)
    refusal = await ledger.admit("r2", [requests(1, window=window)], 30.0)
    assert isinstance(refusal, Refused) and refusal.retry_after_s is not None
    assert window - 5.0 < refusal.retry_after_s <= window
