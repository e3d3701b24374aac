"""A lean, pooled HTTP/1.1 client for talking to engines: asyncio protocol + httptools.

Why not aiohttp: measured on this 2-core machine, a granian + aiohttp
forwarder spends ~0.37 ms CPU per request, ~85% of it in the client; the same
forwarder over this module spends ~0.11 ms (bench/README.md). An engine is a
known peer speaking plain HTTP/1.1 JSON and SSE, so the client needs little:
keep-alive connections, Content-Length and chunked bodies (httptools, the C
parser uvicorn uses), bounded pools, back-pressure, and clear failure modes.

Failure modes, all as exceptions a caller can act on:

- ``ConnectFailed`` – no connection could be made (refused, DNS, connect
  timeout): the request never left this machine.
- ``ConnectionLost`` – the peer closed or reset mid-exchange. ``before_response``
  says whether not one byte of the response had arrived — which does **not**
  mean the engine never got the request (a non-streamed answer sends nothing
  until the whole generation is done), so it is never re-sent, unless the
  caller declares the request idempotent.

A kept-alive connection the engine closed while it sat idle ("stale") is
detected *before* the request is written: a reused connection must be open,
younger than ``_IDLE_REUSE_S``, and its socket must have nothing to read (an
idle HTTP/1.1 connection that is readable holds the peer's FIN or garbage);
otherwise it is dropped and another taken. Only what is detected before
writing is provably unsent.
- ``ProtocolError`` – the peer spoke something other than HTTP/1.1.
- ``ReadTimeout`` – a streamed body stalled past the deadlines given with
  ``Connection.watch`` (``total`` says which one ran out).

One ``Pool`` per upstream host; it never creates more than ``max_connections``
connections, and callers past that wait for one to come back. Nothing here
knows about OpenAI, deployments, teams or keys.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
import ssl
from collections import deque
from typing import cast
from urllib.parse import urlsplit

import httptools

# A streamed response is read ahead at most this far before the socket is paused:
# a slow client must not make the gateway buffer an engine's whole answer.
_READ_AHEAD_BYTES = 256 * 1024
# Idle keep-alive connections older than this are not reused: engines (uvicorn,
# vLLM) drop idle connections after ~5 s, and a write racing that close is lost.
_IDLE_REUSE_S = 4.0


class HTTPClientError(Exception):
    """Base of this module's errors."""


class ConnectFailed(HTTPClientError):
    """No connection could be made; the request was never sent.

    ``reason`` is short and names no address, so it may be shown to callers.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ConnectionLost(HTTPClientError):
    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        self.before_response = before_response


class ProtocolError(HTTPClientError):
    """The peer's bytes were not a valid HTTP/1.1 response."""


class ReadTimeout(HTTPClientError):
    """Waiting for a streamed body's next bytes ran out of time (see ``Connection.watch``).

    ``total``: the response's deadline passed; otherwise nothing arrived for the idle time.
    """

    def __init__(self, message: str, *, total: bool) -> None:
        super().__init__(message)
        self.total = total


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one exchange at a time."""

    __slots__ = ("_pool", "_loop", "_transport", "_parser", "_head", "_waiter", "_chunks",
                 "_buffered", "_paused", "_complete", "_error", "_got_bytes", "status",
                 "content_type", "retry_after", "idle_since", "closed", "_counted", "_keep_alive",
                 "_idle_s", "_deadline", "_waiting_since", "_timer", "_poller")

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()  # made by the loop's create_connection
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self._counted = True  # in the pool's count of open connections
        self.idle_since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._poller: select.poll | None = None  # watches the socket for ``looks_open``
        self._reset()

    def _reset(self) -> None:
        self._head: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._complete = False
        self._error: HTTPClientError | None = None
        self._got_bytes = False
        self._keep_alive = False
        self.status = 0
        self.content_type = b"application/json"
        self.retry_after: bytes | None = None
        self._idle_s: float | None = None  # set by watch(): a streamed body's deadlines
        self._deadline = 0.0
        self._waiting_since = 0.0
        self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        fileno = sock.fileno() if sock is not None else -1
        if fileno >= 0:  # registered once: every reuse then costs one poll(0), nothing more
            self._poller = select.poll()
            self._poller.register(fileno, select.POLLIN | select.POLLPRI)

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"invalid HTTP response: {exc}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._head is not None and not self._complete:
            self._fail(ConnectionLost("the engine closed the connection",
                                      before_response=not self._got_bytes))

    # -- httptools callbacks ----------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 12 and name.lower() == b"content-type":
            self.content_type = value
        elif len(name) == 11 and name.lower() == b"retry-after":  # an engine's 429 says when
            self.retry_after = value

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _READ_AHEAD_BYTES and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive()  # only valid at this moment
        self._wake()

    # -- the exchange -----------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: HTTPClientError) -> None:
        self._error = error
        for future in (self._head, self._waiter):
            if future is not None and not future.done():
                future.set_exception(error)

    def send(self, data: bytes) -> asyncio.Future[None]:
        """Write a whole request; the future resolves when the response head is in."""
        assert self._transport is not None
        self._head = self._loop.create_future()
        self._transport.write(data)
        return self._head

    def watch(self, idle_s: float, deadline: float) -> None:
        """From now on a wait in ``next_chunk`` fails with ``ReadTimeout`` once it has lasted
        ``idle_s``, or when the loop's clock reaches ``deadline`` — for a streamed body.

        One timer serves the whole response: a wait only notes when it began, and the
        timer, when it fires, either ends the wait that ran out or is set again for the
        current one. A stream of many small chunks thus costs no timer per chunk (an
        ``asyncio.timeout`` around each wait arms and cancels one every time).
        """
        self._idle_s = idle_s
        self._deadline = deadline

    def _arm(self) -> None:
        assert self._idle_s is not None
        when = min(self._waiting_since + self._idle_s, self._deadline)
        # A timer may fire a little early (the loop's clock is coarse): never re-arm for less
        # than a millisecond ahead, so that cannot turn into a busy loop.
        self._timer = self._loop.call_at(max(when, self._loop.time() + 0.001), self._expire)

    def _expire(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done() or self._idle_s is None:
            return  # not waiting now: the next wait sets the timer again
        now = self._loop.time()
        idle_ends = self._waiting_since + self._idle_s
        if now < min(idle_ends, self._deadline):
            self._arm()  # set for an earlier wait that has ended: this one has time left
        elif self._deadline <= idle_ends:
            self._fail(ReadTimeout("the response's deadline passed", total=True))
        else:
            self._fail(ReadTimeout(f"nothing arrived for {self._idle_s:g}s", total=False))

    async def next_chunk(self) -> bytes:
        """The body that arrived since the last call (waiting for some); ``b""`` once complete.

        Everything already buffered comes out as one piece: when an engine's events
        arrive together (a token, the usage chunk and ``[DONE]`` in one read, or a
        backlog while the caller was busy) the caller handles and forwards them in
        one pass instead of one per event. Nothing waits to be joined: a lone chunk
        comes out as the same bytes object, at once.
        """
        chunks = self._chunks
        while not chunks:
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            if self._idle_s is not None:
                self._waiting_since = self._loop.time()
                if self._timer is None:
                    self._arm()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if len(chunks) == 1:
            chunk = chunks.popleft()
        else:
            chunk = b"".join(chunks)
            chunks.clear()
        self._buffered = 0
        if self._paused and self._transport:
            self._paused = False
            self._transport.resume_reading()
        return chunk

    async def read(self) -> bytes:
        """The rest of the body."""
        parts = []
        while chunk := await self.next_chunk():
            parts.append(chunk)
        return b"".join(parts)

    async def read_at_most(self, limit: int) -> tuple[bytes, bool]:
        """The rest of the body, but no more than ``limit`` bytes; and whether that was all.

        Stops at the limit instead of buffering an answer of any size (the socket
        is paused past the read-ahead, so the rest stays in the engine). When it
        was not all, the caller must ``abort()``: on HTTP/1.1 dropping the
        connection is the only way to stop a peer mid-body.
        """
        parts = []
        size = 0
        while chunk := await self.next_chunk():
            size += len(chunk)
            if size > limit:
                parts.append(chunk[:len(chunk) - (size - limit)])
                return b"".join(parts), False
            parts.append(chunk)
        return b"".join(parts), True

    async def read_body(self, limit: int) -> tuple[bytes, bool]:
        """``read_at_most(limit)``, and the connection settled with it: back to the pool when
        the body was read whole, dropped when it was cut or the read failed. Read ``status``
        and the headers first: the connection is reset for its next exchange."""
        try:
            body, whole = await self.read_at_most(limit)
        except BaseException:
            self.abort()
            raise
        if whole:
            self.release()
        else:
            self.abort()
        return body, whole

    def release(self) -> None:
        """Give the connection back: pooled if the exchange finished cleanly, else closed."""
        if self._complete and self._keep_alive and self._error is None and not self.closed:
            self._reset()
            self._pool._put_back(self)
        else:
            self.abort()

    def looks_open(self) -> bool:
        """For an idle connection about to be reused: open, and nothing waiting to be read.

        An idle HTTP/1.1 connection has nothing to say; a readable socket means the peer
        closed it (FIN) or broke the protocol — either way it must not carry a request. One
        non-blocking ``poll`` of the socket (registered when the connection was made: the
        descriptor of an open connection cannot change), which sees a FIN the event loop has
        not yet delivered to ``connection_lost``.
        """
        if self.closed or self._transport is None or self._transport.is_closing():
            return False
        poller = self._poller
        return poller is not None and not poller.poll(0)

    def abort(self) -> None:
        self._stop_timer()
        if not self.closed:
            self.closed = True
            if self._transport is not None:
                self._transport.abort()
        if self._counted:
            self._counted = False
            self._pool._forget(self)


def _connect_reason(exc: OSError) -> str:
    """A short cause with no address in it (asyncio's and ssl's messages embed it)."""
    if isinstance(exc, socket.gaierror):
        return "name resolution failed"
    if isinstance(exc, ssl.SSLError):  # its errno is OpenSSL's, not the OS's
        return "TLS handshake failed"
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return "connection failed"


class Pool:
    """Keep-alive connections to one ``scheme://host:port``, at most ``max_connections``."""

    def __init__(self, base_url: str, *, max_connections: int, connect_timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = (ssl.create_default_context()
                                           if parts.scheme == "https" else None)
        default_port = 443 if parts.scheme == "https" else 80
        self.host_header = self.host if self.port == default_port else f"{self.host}:{self.port}"
        if ":" in self.host and self.port == default_port:
            self.host_header = f"[{self.host}]"
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self._idle: deque[Connection] = deque()
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    async def acquire(self) -> tuple[Connection, bool]:
        """A connection, and whether it is a reused one (which may have gone stale)."""
        loop = asyncio.get_running_loop()
        while True:
            while self._idle:
                conn = self._idle.pop()
                if loop.time() - conn.idle_since < _IDLE_REUSE_S and conn.looks_open():
                    return conn, True
                conn.abort()  # stale: found before anything was written on it
            if self._open < self.max_connections:
                return await self._connect(), False
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def request(self, data: bytes, *, idempotent: bool = False) -> Connection:
        """Send one whole request; returns its connection once the response head is in.

        Stale keep-alive connections are passed over before writing (``acquire``).
        Once written, a request is never sent again — the engine may be working on
        it even though no byte of the answer came back — unless ``idempotent``: then
        a reused connection that dies before one response byte arrived is taken for
        a stale one the check could not see, and the request goes out once more on
        a fresh connection. The caller must ``release()`` or ``abort()`` the
        connection it gets.
        """
        while True:
            conn, reused = await self.acquire()
            try:
                await conn.send(data)
                return conn
            except ConnectionLost as exc:
                conn.abort()
                if idempotent and reused and exc.before_response:
                    continue
                raise
            except BaseException:
                conn.abort()
                raise

    async def _connect(self) -> Connection:
        if self._closed:
            raise ConnectFailed("the client is closed", reason="the gateway is shutting down")
        loop = asyncio.get_running_loop()
        self._open += 1
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: Connection(self), self.host, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None)
        except TimeoutError:
            self._open -= 1
            self._wake_one()
            raise ConnectFailed(f"connecting to {self.host}:{self.port} timed out after "
                                f"{self.connect_timeout_s:g}s",
                                reason=f"connect timed out after {self.connect_timeout_s:g}s") from None
        except OSError as exc:
            self._open -= 1
            self._wake_one()
            reason = _connect_reason(exc)
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {reason}",
                                reason=reason) from None
        return conn

    def _put_back(self, conn: Connection) -> None:
        if self._closed:
            conn.abort()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        self._idle.append(conn)
        self._wake_one()

    def _forget(self, conn: Connection) -> None:
        if conn in self._idle:
            self._idle.remove(conn)
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().abort()
