"""The RESP client's settings, URLs and failure messages at their edges (``admission.resp``).

``test_resp`` covers the client's behaviour; these pin what mutmut found loose
(``make mutation``): the documented defaults (two connections, 0.5 s per call),
the settings and URLs refused with the words that say why, the address the client
really connects to, and the exact words of each way a connection ends — closed
by the client (before or after connecting), lost (cleanly, or reset by the
peer), a refused SELECT or connect — since those words are what an operator
reads in the ledger's errors.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support.fake_redis import Answer, FakeRedis, Hangup, Reset, pong

from inferenceops.admission.resp import RespClient, Target, Unavailable, parse_url


@pytest.fixture
async def fake() -> AsyncIterator[FakeRedis]:
    server = FakeRedis()
    yield server
    await server.stop()


@pytest.fixture
async def closing() -> AsyncIterator[list[RespClient]]:
    clients: list[RespClient] = []
    yield clients
    for made in clients:
        await made.close()


def client(closing: list[RespClient], url: str, **options: Any) -> RespClient:
    made = RespClient(url, **options)
    closing.append(made)
    return made


def port_of(url: str) -> int:
    return parse_url(url).port


@pytest.mark.parametrize(("url", "words"), [
    ("redis://h/?timeout=1&pool=2", "unsupported Redis URL option(s): pool, timeout (only db is)"),
    ("redis://h/2X", "the Redis database must be a number, not '2X'"),
    ("redis://ledger@h", "a username in a Redis URL needs a password (redis://user:password@host)"),
    ("unix://", "a unix:// Redis URL needs a socket path (unix:///run/redis.sock)"),
])
def test_urls_refused_say_exactly_why(url: str, words: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_url(url)
    assert str(info.value) == words


def test_a_unix_url_keeps_its_user_and_a_url_without_a_host_means_this_machine() -> None:
    assert parse_url("unix://ledger:pw@/run/redis.sock") == Target(
        path="/run/redis.sock", username="ledger", password="pw")
    assert parse_url("redis:///3") == Target(host="127.0.0.1", port=6379, db=3)


@pytest.mark.parametrize("options", [{"connections": 0}, {"timeout_s": 0.0}, {"timeout_s": -1.0}])
def test_no_connection_or_no_time_to_answer_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as info:
        RespClient("redis://127.0.0.1", **options)
    assert str(info.value) == "connections must be >= 1 and timeout_s > 0"


async def test_a_closed_client_refuses_calls_saying_so() -> None:
    redis = RespClient("redis://127.0.0.1:1")
    await redis.close()
    with pytest.raises(Unavailable) as info:
        await redis.call("PING")
    assert str(info.value) == "the Redis client is closed"


async def test_by_default_calls_spread_over_two_connections(fake: FakeRedis,
                                                            closing: list[RespClient]) -> None:
    redis = client(closing, await fake.start())
    assert [await redis.call("PING") for _ in range(3)] == [b"PONG"] * 3
    assert fake.connections == 2


async def test_by_default_a_call_waits_half_a_second_for_its_reply(fake: FakeRedis,
                                                                   closing: list[RespClient]) -> None:
    fake.answer = lambda command: None
    url = await fake.start()
    redis = client(closing, url)
    async with asyncio.timeout(5):
        with pytest.raises(Unavailable) as info:
            await redis.call("PING")
    assert str(info.value) == f"no reply from 127.0.0.1:{port_of(url)} within 0.5s"


async def test_the_client_connects_to_the_host_in_its_url(fake: FakeRedis,
                                                          closing: list[RespClient]) -> None:
    try:
        url = await fake.start(host="127.0.0.2")  # not the address a missing host would mean
    except OSError as error:
        pytest.skip(f"cannot listen on 127.0.0.2 here: {error}")
    assert await client(closing, url).call("PING") == b"PONG"


async def test_a_refused_select_names_the_command_and_the_servers_words(
        fake: FakeRedis, closing: list[RespClient]) -> None:
    fake.answer = lambda command: (b"-ERR DB index is out of range\r\n" if command[0] == b"SELECT"
                                   else pong(command))
    url = await fake.start()
    with pytest.raises(Unavailable) as info:
        await client(closing, url + "/99").call("PING")
    assert str(info.value) == f"127.0.0.1:{port_of(url)} refused SELECT: ERR DB index is out of range"


async def test_a_refused_connect_gives_the_reason_not_the_errno(closing: list[RespClient]) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Unavailable) as info:
        await client(closing, f"redis://127.0.0.1:{port}").call("PING")
    said = str(info.value)
    assert said.startswith(f"cannot connect to 127.0.0.1:{port}: ") and "[Errno" not in said


async def test_a_connect_that_fails_or_is_cancelled_fails_its_caller_and_logs_nothing_more(
        fake: FakeRedis, closing: list[RespClient], caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake.answer = lambda command: None  # AUTH hangs: the connect never completes
    hanging = await fake.start()
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        with pytest.raises(Unavailable):
            await client(closing, f"redis://127.0.0.1:{port}").call("PING")
        connecting = client(closing, hanging.replace("redis://", "redis://:pw@"), connections=1)
        waiting = asyncio.ensure_future(connecting.call("PING"))
        async with asyncio.timeout(2):
            while not fake.commands:
                await asyncio.sleep(0.01)
        await connecting.close()
        with pytest.raises(Unavailable):
            await waiting
        await asyncio.sleep(0)
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_closing_fails_a_connect_in_progress_and_a_call_in_flight_each_with_its_words(
        fake: FakeRedis, closing: list[RespClient]) -> None:
    fake.answer = lambda command: b"+PONG\r\n" if command == [b"PING"] else None  # AUTH, GET hang
    url = await fake.start()
    connected = client(closing, url, connections=1)
    connecting = client(closing, url.replace("redis://", "redis://:pw@"), connections=1)
    await connected.call("PING")
    in_flight = asyncio.ensure_future(connected.call("GET", "k"))
    waiting = asyncio.ensure_future(connecting.call("GET", "k"))
    async with asyncio.timeout(2):
        while len(fake.commands) < 3:  # PING, GET, AUTH
            await asyncio.sleep(0.01)
        await connected.close()
        await connecting.close()
        results = await asyncio.gather(in_flight, waiting, return_exceptions=True)
    assert [type(r) for r in results] == [Unavailable, Unavailable]
    assert [str(r) for r in results] == ["the Redis client was closed", "the Redis client is closed"]


@pytest.mark.parametrize("hangup", ["clean", "reset"])
async def test_a_lost_connection_says_so_and_why_when_the_peer_said(
        hangup: str, fake: FakeRedis, closing: list[RespClient]) -> None:
    def answer(command: list[bytes]) -> Answer:
        if command[0] == b"GET":
            return Hangup() if hangup == "clean" else Reset()
        return pong(command)

    fake.answer = answer
    url = await fake.start()
    with pytest.raises(Unavailable) as info:
        async with asyncio.timeout(2):
            await client(closing, url, connections=1).call("GET", "k")
    lost = f"the connection to 127.0.0.1:{port_of(url)} was lost"
    if hangup == "clean":
        assert str(info.value) == lost
    else:
        assert str(info.value).startswith(lost + ": ") and "reset" in str(info.value).lower()


async def test_a_connection_the_server_drops_right_after_the_handshake_fails_the_call_as_lost(
        fake: FakeRedis, closing: list[RespClient]) -> None:
    fake.answer = lambda command: Hangup(b"+OK\r\n") if command[0] == b"AUTH" else pong(command)
    url = await fake.start()
    with pytest.raises(Unavailable) as info:
        async with asyncio.timeout(2):
            await client(closing, url.replace("redis://", "redis://:pw@"), connections=1).call("PING")
    assert str(info.value) == f"the connection to 127.0.0.1:{port_of(url)} was lost"
