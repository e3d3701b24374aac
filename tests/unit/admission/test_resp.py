"""The RESP2 client: encoding, parsing, pipelining and every way a connection can fail.

Three tiers, fastest first: the encoder and both reply parsers (hiredis and the
pure-Python fallback) on bytes; one connection driven through a fake transport,
so split reads, reply order and cancellation are exact rather than timing
luck; and whole clients against a tiny scripted RESP server on 127.0.0.1 (or a
unix socket, or TLS) for the failure cases, and against the real Redis at
127.0.0.1:6379 (``INFERENCEOPS_TEST_REDIS_URL`` overrides; skipped, with the
reason, when none answers) for the behaviour that only a real server shows.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import socket
import ssl
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import hiredis
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.support.fake_redis import Answer, FakeRedis, Hangup, pong

from inferenceops.admission import resp
from inferenceops.admission.resp import (
    ProtocolError,
    PyReader,
    ReplyError,
    RespClient,
    Target,
    Unavailable,
    encode,
    parse_url,
)

REDIS_URL = os.environ.get("INFERENCEOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


READERS = {"hiredis": resp._reader, "python": PyReader}  # the real _reader, before any monkeypatch


@pytest.fixture(params=list(READERS))
def reader_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once with hiredis parsing replies and once with the pure-Python fallback."""
    monkeypatch.setattr(resp, "_reader", READERS[request.param])
    return str(request.param)


# -- encoding ---------------------------------------------------------------------------------

def test_commands_are_arrays_of_bulk_strings_whatever_the_argument_types() -> None:
    assert encode(["PING"]) == b"*1\r\n$4\r\nPING\r\n"
    assert encode(["SET", "k\u00e9", b"\xff\x00\r\n", 12, -3, 1.5, bytearray(b"ab")]) == (
        b"*7\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$4\r\n\xff\x00\r\n\r\n$2\r\n12\r\n$2\r\n-3\r\n"
        b"$3\r\n1.5\r\n$2\r\nab\r\n")
    assert encode(["ECHO", ""]) == b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"


@pytest.mark.parametrize("bad", [True, None, object()])
def test_arguments_redis_cannot_represent_unambiguously_are_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="Redis"):
        encode(["SET", "k", bad])  # type: ignore[list-item]


# -- parsing ----------------------------------------------------------------------------------

def test_hiredis_parses_when_installed_and_the_python_reader_when_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(resp._reader(), hiredis.Reader)
    monkeypatch.setitem(sys.modules, "hiredis", None)  # what a missing package looks like to import
    assert isinstance(resp._reader(), PyReader)


STREAM = (b"+OK\r\n-NOSCRIPT No matching script\r\n:-42\r\n$5\r\nhe\r\no\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
          b"*4\r\n:1\r\n*2\r\n$-1\r\n-ERR inner\r\n*1\r\n*0\r\n$3\r\nend\r\n")


def check_stream(replies: list[Any]) -> None:
    assert replies[0] == b"OK"
    assert isinstance(replies[1], ReplyError) and replies[1].code == "NOSCRIPT"
    assert str(replies[1]) == "NOSCRIPT No matching script"
    assert replies[2:8] == [-42, b"he\r\no", b"", None, None, []]
    nested = replies[8]
    assert nested[0] == 1 and nested[1][0] is None and isinstance(nested[1][1], ReplyError)
    assert nested[2:] == [[[]], b"end"]
    assert len(replies) == 9


def drain(reader: Any) -> list[Any]:
    replies = []
    while (reply := reader.gets()) is not False:
        replies.append(reply)
    return replies


@pytest.mark.parametrize("kind", READERS)
def test_both_parsers_read_every_reply_type_in_one_feed(kind: str) -> None:
    reader = READERS[kind]()
    reader.feed(STREAM)
    check_stream(drain(reader))


@pytest.mark.parametrize("kind", READERS)
def test_both_parsers_read_a_stream_fed_one_byte_at_a_time(kind: str) -> None:
    reader = READERS[kind]()
    replies: list[Any] = []
    for i in range(len(STREAM)):
        reader.feed(STREAM[i:i + 1])
        replies += drain(reader)
    check_stream(replies)


@pytest.mark.parametrize("kind", READERS)
@pytest.mark.parametrize("garbage", [b"!what\r\n", b":12x\r\n", b"$abc\r\n"])
def test_both_parsers_raise_the_modules_protocol_error_on_garbage(kind: str, garbage: bytes) -> None:
    reader = READERS[kind]()
    reader.feed(garbage)
    with pytest.raises(ProtocolError):
        reader.gets()


def test_the_python_parser_refuses_a_bulk_string_longer_than_announced_and_absurd_nesting() -> None:
    reader = PyReader()
    reader.feed(b"$2\r\nabc\r\n")
    with pytest.raises(ProtocolError, match="CRLF"):
        reader.gets()
    reader = PyReader()
    reader.feed(b"*1\r\n" * 20 + b":1\r\n")
    with pytest.raises(ProtocolError, match="nested"):
        reader.gets()


# -- URLs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "target"), [
    ("redis://10.0.0.5", Target("10.0.0.5", 6379)),
    ("redis://cache:6380/3", Target("cache", 6380, db=3)),
    ("redis://:s3cret@cache/1", Target("cache", db=1, password="s3cret")),
    ("redis://ledger:p%40ss%3Aword@cache", Target("cache", username="ledger", password="p@ss:word")),
    ("rediss://cache.example.com:6390/2", Target("cache.example.com", 6390, tls=True, db=2)),
    ("unix:///run/redis/redis.sock?db=4", Target(path="/run/redis/redis.sock", db=4)),
    ("unix://:pw@/run/redis.sock", Target(path="/run/redis.sock", password="pw")),
])
def test_urls_name_the_server_the_database_and_the_credentials(url: str, target: Target) -> None:
    assert parse_url(url) == target


@pytest.mark.parametrize(("url", "error"), [
    ("http://cache:6379", "not a redis"),
    ("redis://cache/zero", "must be a number"),
    ("redis://cache/0?ssl_cert_reqs=none", "unsupported Redis URL option"),
    ("redis://someone@cache", "needs a password"),
    ("unix://", "socket path"),
])
def test_urls_the_client_cannot_honour_are_refused_up_front(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        RespClient(url)


def test_addresses_in_messages_never_show_the_password() -> None:
    target = parse_url("redis://:s3cret@cache:6380")
    assert "s3cret" not in target.address and "s3cret" not in repr(target)


# -- one connection over a fake transport ----------------------------------------------------

class FakeTransport:
    def __init__(self, protocol: asyncio.Protocol) -> None:
        self.protocol = protocol
        self.writes: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


def connection(timeout_s: float = 5.0) -> tuple[Any, FakeTransport]:
    conn = resp._Connection(asyncio.get_running_loop(), timeout_s, "fake:1")
    transport = FakeTransport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


async def test_replies_split_anywhere_across_reads_resolve_the_calls_in_order(reader_kind: str) -> None:
    conn, _ = connection()
    futures = [conn.send(encode(["X", i])) for i in range(4)]
    stream = b"$10\r\n0123456789\r\n*2\r\n$1\r\na\r\n$-1\r\n-WRONGTYPE bad key\r\n:7\r\n"
    for i in range(0, len(stream), 3):
        conn.data_received(stream[i:i + 3])
    assert [await futures[0], await futures[1]] == [b"0123456789", [b"a", None]]
    with pytest.raises(ReplyError, match="WRONGTYPE") as error:
        await futures[2]
    assert error.value.code == "WRONGTYPE"
    assert await futures[3] == 7
    conn.abort(Unavailable("done"))
    await conn.wait_closed()


async def test_requests_sent_while_calls_are_in_flight_leave_in_one_write_per_loop_turn() -> None:
    conn, transport = connection()
    futures = [conn.send(encode(["PING"])) for _ in range(100)]
    assert len(transport.writes) == 1  # the first went out at once: the connection was idle
    await asyncio.sleep(0)
    assert len(transport.writes) == 2 and transport.writes[1] == encode(["PING"]) * 99
    conn.data_received(b"+PONG\r\n" * 100)
    assert [await f for f in futures] == [b"PONG"] * 100
    conn.abort(Unavailable("done"))
    await conn.wait_closed()


async def test_a_cancelled_callers_reply_is_dropped_and_the_next_caller_gets_its_own() -> None:
    conn, _ = connection()
    first = asyncio.ensure_future(conn.send(encode(["GET", "a"])))
    second = conn.send(encode(["GET", "b"]))
    first.cancel()
    conn.data_received(b"$1\r\na\r\n$1\r\nb\r\n")
    assert await second == b"b"
    assert first.cancelled()
    conn.abort(Unavailable("done"))
    await conn.wait_closed()


async def test_a_reply_nobody_asked_for_closes_the_connection() -> None:
    conn, transport = connection()
    future = conn.send(encode(["PING"]))
    conn.data_received(b"+OK\r\n+EXTRA\r\n")
    assert await future == b"OK"
    assert transport.aborted and conn.closed
    await conn.wait_closed()


async def test_garbage_from_the_server_fails_every_pending_call_and_closes_the_connection(
        reader_kind: str) -> None:
    conn, transport = connection()
    futures = [conn.send(encode(["PING"])) for _ in range(2)]
    conn.data_received(b"?\r\n")
    for future in futures:
        with pytest.raises(ProtocolError, match="fake:1"):
            await future
    assert transport.aborted
    await conn.wait_closed()


# -- whole clients against a scripted server ---------------------------------------------------

@pytest.fixture
async def fake() -> AsyncIterator[FakeRedis]:
    server = FakeRedis()
    yield server
    await server.stop()


@pytest.fixture
async def closing() -> AsyncIterator[list[RespClient]]:
    """Clients made by a test are closed even when it fails."""
    clients: list[RespClient] = []
    yield clients
    for client in clients:
        await client.close()


def client(closing: list[RespClient], url: str, **options: Any) -> RespClient:
    made = RespClient(url, **options)
    closing.append(made)
    return made


async def test_a_timed_out_call_closes_its_connection_and_fails_every_call_waiting_on_it(
        fake: FakeRedis, closing: list[RespClient]) -> None:
    fake.answer = lambda command: None if command[0] == b"BLPOP" else pong(command)
    redis = client(closing, await fake.start(), timeout_s=0.2, connections=1)
    assert await redis.call("PING") == b"PONG"
    calls = [asyncio.ensure_future(redis.call("BLPOP", "q", 0)) for _ in range(3)]
    async with asyncio.timeout(2):
        results = await asyncio.gather(*calls, return_exceptions=True)
        await fake.disconnected.wait()  # the client closed its side
    assert all(isinstance(r, Unavailable) for r in results)
    assert "no reply from 127.0.0.1" in str(results[0]) and "within 0.2s" in str(results[0])
    assert all("an earlier call on it timed out" in str(r) for r in results[1:])
    assert await redis.call("PING") == b"PONG"  # the next call connects again
    assert fake.connections == 2


async def test_a_server_closing_mid_reply_fails_the_pending_calls_and_the_next_call_reconnects(
        fake: FakeRedis, closing: list[RespClient], reader_kind: str) -> None:
    fake.answer = lambda command: Hangup(b"$10\r\nhalf") if command[0] == b"GET" else pong(command)
    redis = client(closing, await fake.start(), connections=1)
    calls = [asyncio.ensure_future(redis.call("GET", "k")), asyncio.ensure_future(redis.call("PING"))]
    async with asyncio.timeout(2):
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert [type(r) for r in results] == [Unavailable, Unavailable]
    assert "was lost" in str(results[0])
    fake.answer = pong
    assert await redis.call("ECHO", "again") == b"again"
    assert fake.connections == 2


async def test_a_refused_connection_fails_fast_and_says_where(closing: list[RespClient]) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = client(closing, f"redis://127.0.0.1:{port}", timeout_s=5)
    async with asyncio.timeout(1):
        with pytest.raises(Unavailable, match=f"cannot connect to 127.0.0.1:{port}"):
            await redis.call("PING")


async def test_a_connect_that_never_completes_its_handshake_times_out(
        fake: FakeRedis, closing: list[RespClient]) -> None:
    fake.answer = lambda command: None
    url = await fake.start()
    redis = client(closing, url.replace("redis://", "redis://:pw@"), timeout_s=5, connect_timeout_s=0.2)
    async with asyncio.timeout(2):
        with pytest.raises(Unavailable, match="connecting to 127.0.0.1:.* timed out after 0.2s"):
            await redis.call("PING")


async def test_auth_and_select_from_the_url_run_first_on_every_new_connection(
        fake: FakeRedis, closing: list[RespClient]) -> None:
    url = await fake.start()
    redis = client(closing, url.replace("redis://", "redis://ledger:p%40ss@") + "/3", connections=2)
    assert [await redis.call("PING") for _ in range(2)] == [b"PONG", b"PONG"]
    auth, select = [b"AUTH", b"ledger", b"p@ss"], [b"SELECT", b"3"]
    assert fake.commands == [auth, select, [b"PING"], auth, select, [b"PING"]]  # two slots, two connections


async def test_a_refused_auth_fails_the_call_with_the_servers_words(
        fake: FakeRedis, closing: list[RespClient]) -> None:
    fake.answer = lambda command: (b"-WRONGPASS invalid username-password pair\r\n" if command[0] == b"AUTH"
                                   else b"-NOAUTH Authentication required.\r\n")
    url = await fake.start()
    redis = client(closing, url.replace("redis://", "redis://:nope@") + "/2")
    with pytest.raises(Unavailable, match="refused AUTH: WRONGPASS invalid"):
        await redis.call("PING")


async def test_close_fails_calls_in_flight_and_calls_waiting_for_a_connect(
        fake: FakeRedis, closing: list[RespClient]) -> None:
    all_sent = asyncio.Event()

    def answer(command: list[bytes]) -> Answer:  # PING only: GETs hang, and so does AUTH
        if sorted(c[0] for c in fake.commands) == [b"AUTH", b"GET", b"GET", b"PING"]:
            all_sent.set()
        return b"+PONG\r\n" if command == [b"PING"] else None

    fake.answer = answer
    url = await fake.start()
    connected = client(closing, url, connections=1, timeout_s=30)
    connecting = client(closing, url.replace("redis://", "redis://:pw@"), connections=1, timeout_s=30)
    await connected.call("PING")
    calls = [asyncio.ensure_future(c.call("GET", "k"))
             for c in (connected, connected, connecting, connecting)]
    async with asyncio.timeout(2):
        await all_sent.wait()
        await connected.close()
        await connecting.close()
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, Unavailable) and "closed" in str(r) for r in results), results
    with pytest.raises(Unavailable, match="closed"):
        await connected.call("PING")
    await connected.close()  # twice: harmless


async def test_unix_sockets_work_like_tcp(fake: FakeRedis, closing: list[RespClient], tmp_path: Path) -> None:
    redis = client(closing, await fake.start(unix_path=tmp_path / "redis.sock") + "?db=2")
    assert await redis.call("ECHO", "over unix") == b"over unix"
    assert fake.commands[0] == [b"SELECT", b"2"]


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh certificate for 127.0.0.1, and a client context trusting only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test redis")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return server, ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))


async def test_rediss_speaks_tls_and_verifies_the_server(
        fake: FakeRedis, closing: list[RespClient], tmp_path: Path) -> None:
    server_tls, trusting = self_signed(tmp_path)
    url = await fake.start(tls=server_tls)
    assert await client(closing, url, ssl_context=trusting).call("ECHO", "secret") == b"secret"
    with pytest.raises(Unavailable, match="cannot connect"):  # the default context does not trust it
        await client(closing, url).call("PING")


# -- against the real Redis ------------------------------------------------------------------

@pytest.fixture
async def real(closing: list[RespClient]) -> RespClient:
    redis = client(closing, REDIS_URL, connections=1)
    try:
        await redis.call("PING")
    except Unavailable as error:
        pytest.skip(f"no Redis server answers at {REDIS_URL} ({error})")
    return redis


async def test_many_concurrent_calls_share_one_connection_and_each_gets_its_own_reply(
        real: RespClient, reader_kind: str) -> None:
    key = f"test-resp-{uuid.uuid4().hex}"
    try:
        echoes = await asyncio.gather(*(real.call("ECHO", f"call {i}") for i in range(1000)))
        assert echoes == [f"call {i}".encode() for i in range(1000)]
        counts = await asyncio.gather(*(real.call("INCR", key) for _ in range(500)))
        assert counts == list(range(1, 501))  # written in call order, answered in call order
        ids = await asyncio.gather(*(real.call("CLIENT", "ID") for _ in range(100)))
        assert len(set(ids)) == 1  # and all of it over one connection
    finally:
        await real.call("DEL", key)


async def test_error_replies_raise_reply_error_and_leave_the_connection_usable(real: RespClient) -> None:
    with pytest.raises(ReplyError) as error:
        await real.call("EVALSHA", "0" * 40, 0)
    assert error.value.code == "NOSCRIPT"
    key = f"test-resp-{uuid.uuid4().hex}"
    try:
        await real.call("SET", key, "a string")
        with pytest.raises(ReplyError, match="WRONGTYPE"):
            await real.call("LPUSH", key, "x")
        assert await real.call("GET", key) == b"a string"
    finally:
        await real.call("DEL", key)


def real_url(*, db: int | None = None, password: str | None = None) -> str:
    """REDIS_URL with another database or password."""
    target = parse_url(REDIS_URL)
    secret = target.password if password is None else password
    auth = f"{target.username or ''}:{secret}@" if secret is not None else ""
    return f"redis://{auth}{target.host}:{target.port}/{target.db if db is None else db}"


async def test_the_database_in_the_url_is_selected(real: RespClient, closing: list[RespClient]) -> None:
    other = 5 if parse_url(REDIS_URL).db != 5 else 6
    elsewhere = client(closing, real_url(db=other))
    key = f"test-resp-{uuid.uuid4().hex}"
    try:
        await elsewhere.call("SET", key, "over there")
        assert await real.call("EXISTS", key) == 0
        assert await elsewhere.call("GET", key) == b"over there"
    finally:
        await elsewhere.call("DEL", key)


async def test_a_password_the_real_server_rejects_is_unavailable(real: RespClient,
                                                                 closing: list[RespClient]) -> None:
    wrong = client(closing, real_url(password="definitely-not-the-password"))
    with pytest.raises(Unavailable, match="refused AUTH"):
        await wrong.call("PING")
