"""``RedisLedger.ping`` and ``leave``: the readiness probe really probes, failures say what failed.

The Redis test fixtures skip when ``ping`` fails, so a broken ``ping`` would
silently turn every Redis test into a skip: here Redis is found with a plain
socket first, and only then must ``ping`` succeed (mutmut found ``ping`` unguarded,
``make mutation``). Against a port nobody listens on, both calls fail as
``LedgerUnavailable`` naming the call and the underlying error.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from urllib.parse import urlsplit

import pytest

from inferenceops.admission import resp
from inferenceops.admission.ledger import LedgerUnavailable
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


@pytest.mark.parametrize("call", ["ping", "leave"])
async def test_an_unreachable_redis_fails_the_call_saying_which_and_why(call: str) -> None:
    ledger = RedisLedger("redis://127.0.0.1:1/0", prefix="test-probe", timeout_s=0.3)
    try:
        with pytest.raises(LedgerUnavailable) as info:
            await getattr(ledger, call)()
    finally:
        await ledger.close()
    match = re.fullmatch(f"redis ledger {call} failed: (\\w+): .+", str(info.value))
    assert match is not None, str(info.value)
    assert match.group(1) in RESP_ERRORS
    assert not ledger.live
