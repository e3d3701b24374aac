"""The lean HTTP/1.1 client: keep-alive, pooling, bodies, back-pressure, failure modes.

Each test runs a tiny raw asyncio server whose behaviour it scripts byte by
byte, so what the client must cope with is explicit.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from inferenceops.engines.http1 import (
    ConnectFailed,
    ConnectionLost,
    Pool,
    ProtocolError,
    ReadTimeout,
    _connect_reason,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
REQUEST = b"POST /v1/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
            % (extra, len(body), body))


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[Server, Pool]]]]:
    servers: list[asyncio.Server] = []
    pools: list[Pool] = []

    async def start(handler: Handler, max_connections: int = 4) -> tuple[Server, Pool]:
        server = Server(handler)
        srv = await asyncio.start_server(server._serve, "127.0.0.1", 0)
        servers.append(srv)
        port = srv.sockets[0].getsockname()[1]
        pool = Pool(f"http://127.0.0.1:{port}/v1", max_connections=max_connections,
                    connect_timeout_s=1)
        pools.append(pool)
        return server, pool

    yield start  # type: ignore[misc]
    for pool in pools:
        pool.close()
    for srv in servers:
        srv.close()


async def exchange(pool: Pool, request: bytes = REQUEST) -> tuple[int, bytes]:
    conn = await pool.request(request)
    try:
        body = await conn.read()
    except BaseException:
        conn.abort()
        raise
    status = conn.status
    conn.release()
    return status, body


async def keep_alive_json(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_request(reader)
        writer.write(ok(b'{"ok":true}'))
        await writer.drain()


async def test_sequential_requests_share_one_keep_alive_connection(serve) -> None:
    server, pool = await serve(keep_alive_json)
    for _ in range(5):
        assert await exchange(pool) == (200, b'{"ok":true}')
    assert server.connections == 1 and pool.open_connections == 1


async def test_pool_never_opens_more_than_its_limit(serve) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(0.02)
            writer.write(ok(b"{}"))

    server, pool = await serve(slow, max_connections=2)
    results = await asyncio.gather(*(exchange(pool) for _ in range(8)))
    assert results == [(200, b"{}")] * 8
    assert server.connections == 2


async def test_chunked_body_arrives_in_pieces_and_whole(serve) -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(3):
            data = b"data: %d\n\n" % i
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await keep_alive_json(reader, writer)

    _, pool = await serve(chunked)
    conn = await pool.request(REQUEST)
    assert conn.content_type == b"text/event-stream"
    pieces = []
    while chunk := await conn.next_chunk():
        pieces.append(chunk)
    conn.release()
    assert b"".join(pieces) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert len(pieces) == 3
    assert await exchange(pool) == (200, b'{"ok":true}')  # the connection was reusable


async def test_chunks_that_arrived_together_come_out_as_one_piece_in_order(serve) -> None:
    events = [b"data: %d\n\n" % i for i in range(4)]
    ready = asyncio.Event()

    async def burst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        writer.write(b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events[:3]))
        await writer.drain()
        await ready.wait()
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(events[3]), events[3]))
        await keep_alive_json(reader, writer)

    _, pool = await serve(burst)
    conn = await pool.request(REQUEST)
    while len(conn._chunks) < 3:  # the three events are parsed (three body callbacks)
        await asyncio.sleep(0.001)
    assert await conn.next_chunk() == b"".join(events[:3])  # taken in one piece
    ready.set()
    assert await conn.next_chunk() == events[3]
    assert await conn.next_chunk() == b""
    conn.release()
    assert await exchange(pool) == (200, b'{"ok":true}')


async def test_stale_keep_alive_connection_is_replaced(serve) -> None:
    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"{}"))
        await writer.drain()
        # then closes: the pooled connection is dead when the client reuses it

    server, pool = await serve(one_then_close)
    assert await exchange(pool) == (200, b"{}")
    await asyncio.sleep(0.05)
    assert await exchange(pool) == (200, b"{}")
    assert server.connections == 2


async def _close_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(ok(b"{}"))
    await writer.drain()
    await read_request(reader)  # reads the second request, answers nothing, closes


async def test_a_written_request_whose_connection_dies_is_never_sent_again(serve) -> None:
    """The engine read it (it may be generating): dying before the answer is not 'stale'."""
    server, pool = await serve(_close_second)
    assert await exchange(pool) == (200, b"{}")
    with pytest.raises(ConnectionLost) as info:
        await exchange(pool)
    assert info.value.before_response
    assert server.connections == 1


async def test_an_idempotent_request_is_sent_again_when_a_reused_connection_dies(serve) -> None:
    server, pool = await serve(_close_second)
    assert await exchange(pool) == (200, b"{}")
    conn = await pool.request(REQUEST, idempotent=True)
    assert conn.status == 200
    conn.release()
    assert server.connections == 2


async def test_refused_connection_is_connect_failed() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    pool = Pool(f"http://127.0.0.1:{port}", max_connections=1, connect_timeout_s=1)
    with pytest.raises(ConnectFailed) as info:
        await pool.acquire()
    assert info.value.reason == "connection refused"
    assert str(port) not in info.value.reason
    assert pool.open_connections == 0


async def test_garbage_response_is_a_protocol_error(serve) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP READY\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    _, pool = await serve(garbage)
    with pytest.raises(ProtocolError):
        await exchange(pool)
    assert pool.open_connections == 0


async def test_connection_lost_mid_body_is_reported_after_response_started(serve) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part")
        await writer.drain()

    _, pool = await serve(cut)
    with pytest.raises(ConnectionLost) as info:
        await exchange(pool)
    assert info.value.before_response is False


async def test_slow_reader_pauses_the_socket_and_loses_nothing(serve) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(payload))
        await writer.drain()

    _, pool = await serve(big)
    conn = await pool.request(REQUEST)
    await asyncio.sleep(0.2)  # the consumer stalls; the engine keeps sending
    assert conn._paused
    assert conn._buffered < len(payload) // 2  # read-ahead stopped well short of the body
    received = bytearray()
    while chunk := await conn.next_chunk():
        received += chunk
    assert bytes(received) == payload
    assert not conn._paused


def test_a_tls_failure_is_described_without_the_host_it_names() -> None:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                                            "failed: Hostname mismatch, certificate is not valid "
                                            "for 'gpu-7.corp.internal'")
    assert _connect_reason(error) == "TLS handshake failed"


async def test_read_at_most_stops_at_the_limit_and_says_so(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"x" * 100))
        await writer.drain()

    _, pool = await serve(handler)
    conn = await pool.request(REQUEST)
    assert await conn.read_at_most(40) == (b"x" * 40, False)
    conn.abort()
    conn = await pool.request(REQUEST)
    assert await conn.read_at_most(100) == (b"x" * 100, True)
    conn.release()


def paced_stream(events: int, gap_s: float, after: asyncio.Event | None = None) -> Handler:
    """An SSE answer of ``events`` chunks ``gap_s`` apart; the last waits for ``after`` (if any)."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(events):
            if i == events - 1 and after is not None:
                await after.wait()
            elif i:
                await asyncio.sleep(gap_s)
            data = b"data: %d\n\n" % i
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await keep_alive_json(reader, writer)
    return handler


async def read_all(conn: object) -> list[bytes]:
    pieces = []
    while chunk := await conn.next_chunk():  # type: ignore[attr-defined]
        pieces.append(chunk)
    return pieces


async def test_a_watched_stream_outlives_its_idle_time_while_chunks_keep_coming(serve) -> None:  # type: ignore[no-untyped-def]
    """The idle clock starts again with every wait: 12 chunks 20 ms apart outlast 100 ms idle."""
    _, pool = await serve(paced_stream(12, 0.02))
    conn = await pool.request(REQUEST)
    loop = asyncio.get_running_loop()
    conn.watch(0.1, loop.time() + 30)
    assert len(b"".join(await read_all(conn)).split(b"\n\n")) == 13
    conn.release()
    assert conn._timer is None  # nothing left armed on a pooled connection
    assert await exchange(pool) == (200, b'{"ok":true}')


async def test_a_stalled_watched_stream_fails_saying_the_idle_time_ran_out(serve) -> None:  # type: ignore[no-untyped-def]
    never = asyncio.Event()
    _, pool = await serve(paced_stream(3, 0.0, after=never))
    conn = await pool.request(REQUEST)
    conn.watch(0.1, asyncio.get_running_loop().time() + 30)
    with pytest.raises(ReadTimeout) as info:
        await read_all(conn)
    assert info.value.total is False
    conn.abort()
    assert pool.open_connections == 0


async def test_a_watched_stream_past_its_deadline_fails_saying_so(serve) -> None:  # type: ignore[no-untyped-def]
    """Chunks keep coming (never idle for long), but the response's deadline passes."""
    _, pool = await serve(paced_stream(1000, 0.02))
    conn = await pool.request(REQUEST)
    conn.watch(5.0, asyncio.get_running_loop().time() + 0.15)
    with pytest.raises(ReadTimeout) as info:
        await read_all(conn)
    assert info.value.total is True
    conn.abort()


async def test_time_spent_away_from_next_chunk_is_not_idle_time(serve) -> None:  # type: ignore[no-untyped-def]
    """Only waiting counts: a caller busy elsewhere (writing to a slow client) for longer than
    the idle time, then waiting briefly, is not cut off."""
    go = asyncio.Event()
    _, pool = await serve(paced_stream(3, 0.0, after=go))
    conn = await pool.request(REQUEST)
    conn.watch(0.1, asyncio.get_running_loop().time() + 30)
    got = await conn.next_chunk()  # waits (the timer is set), then returns
    while got.count(b"\n\n") < 2:
        got += await conn.next_chunk()
    await asyncio.sleep(0.25)  # away: the timer fires while nobody waits, and lets it be
    go.set()
    assert await conn.next_chunk() == b"data: 2\n\n"
    assert await conn.next_chunk() == b""
    conn.release()
