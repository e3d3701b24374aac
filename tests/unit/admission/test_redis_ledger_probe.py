"""``RedisLedger``'s calls: the readiness probe really probes, failures say what failed.

The Redis test fixtures skip when ``ping`` fails, so a broken ``ping`` would
silently turn every Redis test into a skip: here Redis is found with a plain
socket first, and only then must ``ping`` succeed (mutmut found ``ping`` unguarded,
``make mutation``). Against a port nobody listens on, every call fails as
``LedgerUnavailable`` naming the call and the underlying error; a settlement
Redis could not count exactly is refused before anything is sent.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from urllib.parse import urlsplit

import pytest

from inferenceops.admission import resp
from inferenceops.admission.ledger import Check, CheckKind, LedgerUnavailable
from inferenceops.admission.redis_ledger import RedisLedger

REDIS_URL = os.environ.get("INFERENCEOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RESP_ERRORS = {cls.__name__ for cls in (resp.RespError, resp.Unavailable, resp.ProtocolError,
                                        resp.ReplyError)}


def redis_answers() -> bool:
    where = urlsplit(REDIS_URL)
    try:
        with socket.create_connection((where.hostname or "127.0.0.1", where.port or 6379), 1) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


async def test_ping_answers_when_redis_does() -> None:
    if not redis_answers():
        pytest.skip(f"no Redis answers at {REDIS_URL}")
    ledger = RedisLedger(REDIS_URL, prefix=f"test-probe-{uuid.uuid4().hex[:8]}")
    try:
        assert await ledger.ping() is None
    finally:
        await ledger.close()


CHECK = Check(CheckKind.BUDGET, "bud:team:t:m2026-12", 100, 10, "budget", ttl_s=60.0)
CALLS = {
    "ping": lambda ledger: ledger.ping(),
    "leave": lambda ledger: ledger.leave(),
    "beat": lambda ledger: ledger.beat(),
    "admit": lambda ledger: ledger.admit("r1", [CHECK], 30.0),
    "settle": lambda ledger: ledger.settle("r1", [CHECK], 3, 7),
    "release": lambda ledger: ledger.release("r1", [CHECK]),
    "read": lambda ledger: ledger.read([CHECK]),
    "budget_totals": lambda ledger: ledger.budget_totals(CHECK.counter),
}


@pytest.mark.parametrize("call", list(CALLS))
async def test_an_unreachable_redis_fails_the_call_saying_which_and_why(call: str) -> None:
    ledger = RedisLedger("redis://127.0.0.1:1/0", prefix="test-probe", timeout_s=0.3)
    try:
        with pytest.raises(LedgerUnavailable) as info:
            await CALLS[call](ledger)
    finally:
        await ledger.close()
    # A beat, and an admission taking leases on an instance not yet live (it beats first),
    # fail as the heartbeat.
    said = "heartbeat" if call in ("beat", "admit") else call
    match = re.fullmatch(f"redis ledger {said} failed: (\\w+): .+", str(info.value))
    assert match is not None, str(info.value)
    assert match.group(1) in RESP_ERRORS
    assert not ledger.live


@pytest.mark.parametrize(("tokens", "cost"), [(2**53, 0), (0, 2**53), (-1, 0), (0, -1)])
async def test_a_settlement_a_redis_number_cannot_hold_exactly_is_refused_before_sending(
        tokens: int, cost: int) -> None:
    ledger = RedisLedger("redis://127.0.0.1:1/0", prefix="test-probe", timeout_s=0.3)
    try:
        with pytest.raises(ValueError) as info:
            await ledger.settle("r1", [CHECK], tokens, cost)
    finally:
        await ledger.close()
    assert str(info.value) == "tokens and cost must be in [0, 2**53)"
