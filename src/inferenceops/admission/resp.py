"""A small asyncio RESP2 client: what the Redis ledger needs, at a fraction of redis-py's CPU.

Why not redis-py: every inference request makes one admit and one settle, and
over redis-py's asyncio client that pair cost ~185 µs of client CPU (~140 µs
more than the two round trips cost a bare socket), against a gateway budget of
0.25 ms per request; over this module it is ~30 µs more than the bare socket,
and ~23 µs per pair with 64 concurrent callers (``bench/results/ledger-latest.md``).
Like ``engines/http1.py`` for HTTP, this is an asyncio ``Protocol``: requests
are encoded straight to RESP bytes, replies are parsed by ``hiredis.Reader``
(C), and there are no per-call context managers, pool locks or retry wrappers.

How calls travel: a client keeps ``connections`` slots (default 2). A call
takes the next slot round-robin, writes its request and waits on a future
queued in that connection's FIFO; Redis answers in order, so each reply
resolves the oldest future (pipelining: many callers share one connection).
Requests written while others are in flight are joined into one write per loop
turn. Slots connect lazily, and a broken connection is replaced on the next
call that lands on its slot.

What it must not do: retry. A command whose reply did not come back may or may
not have run, and a retried admission could reserve twice; callers decide.

Failure modes, both below ``RespError``:

- ``Unavailable`` – no reply: cannot connect (refused, unreachable, connect
  timeout, AUTH/SELECT refused), no reply within ``timeout_s``, connection
  lost, a protocol error, or the client is closed. A timeout or protocol error
  closes the connection and fails all its pending calls, because the FIFO can
  no longer be trusted to pair replies with callers.
- ``ReplyError`` – Redis answered with an error reply (``NOSCRIPT …``,
  ``WRONGTYPE …``); the connection stays healthy.

Nothing here knows about the ledger, its keys or its script.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

Arg = str | bytes | bytearray | memoryview | int | float


class RespError(Exception):
    """Base of this module's errors."""


class Unavailable(RespError):
    """No reply came back. Unless connecting failed, the command may have run."""


class ProtocolError(Unavailable):
    """The server's bytes were not RESP2."""


class ReplyError(RespError):
    """An error reply from Redis; ``str(error)`` is its text, ``code`` its first word."""

    @property
    def code(self) -> str:
        return str(self).split(" ", 1)[0]


def encode(args: Sequence[Arg]) -> bytes:
    """One command as a RESP array of bulk strings (what every Redis command is on the wire).

    Built as one ``str`` and encoded once: ~30% less CPU than joining bytes
    pieces. ASCII text (the hot path: keys, ids, numbers) has as many bytes as
    characters; anything else is first turned into bytes and carried through
    as latin-1, which maps every byte to one character and back unchanged.
    """
    out = [f"*{len(args)}\r\n"]
    for arg in args:
        if type(arg) is str and arg.isascii():
            out.append(f"${len(arg)}\r\n{arg}\r\n")
        elif type(arg) is int:
            text = str(arg)
            out.append(f"${len(text)}\r\n{text}\r\n")
        else:
            data = _bytes_of(arg)
            out.append(f"${len(data)}\r\n{data.decode('latin-1')}\r\n")
    return "".join(out).encode("latin-1")


def _bytes_of(arg: object) -> bytes:
    if isinstance(arg, bytes | bytearray | memoryview):
        return bytes(arg)
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, int) and not isinstance(arg, bool):  # an IntEnum, say
        return b"%d" % arg
    if isinstance(arg, float):
        return repr(arg).encode()
    # bool and None included: redis-py refuses them too, as "True"/"" would be silent bugs.
    raise TypeError(f"cannot send {arg!r} to Redis: convert it to str, bytes, int or float first")


class _Incomplete(Exception):
    pass


class PyReader:
    """The fallback when hiredis is missing: ``feed()``/``gets()`` as in ``hiredis.Reader``.

    ``gets()`` returns a reply (error replies as ``ReplyError`` values), or
    ``False`` until one is complete (RESP2 has no booleans). An incomplete reply
    is parsed again from its start when more bytes come: fine for the ledger's
    small replies, quadratic for huge ones split over many reads.
    """

    _MAX_DEPTH = 16

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def gets(self) -> Any:
        try:
            reply, self._pos = self._parse(self._pos, 0)
        except _Incomplete:
            return False
        except ValueError as error:  # a length or integer that is not one
            raise ProtocolError(f"Protocol error, {error}") from None
        if self._pos == len(self._buf) or self._pos > 65536:
            del self._buf[:self._pos]
            self._pos = 0
        return reply

    def _parse(self, pos: int, depth: int) -> tuple[Any, int]:
        buf = self._buf
        end = buf.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        kind, line, pos = buf[pos], bytes(buf[pos + 1:end]), end + 2
        if kind == 0x2B:  # +
            return line, pos
        if kind == 0x2D:  # -
            return ReplyError(line.decode(errors="replace")), pos
        if kind == 0x3A:  # :
            return int(line), pos
        if kind == 0x24:  # $
            size = int(line)
            if size < 0:
                return None, pos
            if len(buf) < pos + size + 2:
                raise _Incomplete
            if buf[pos + size:pos + size + 2] != b"\r\n":
                raise ProtocolError("Protocol error, bulk string not followed by CRLF")
            return bytes(buf[pos:pos + size]), pos + size + 2
        if kind == 0x2A:  # *
            count = int(line)
            if count < 0:
                return None, pos
            if depth >= self._MAX_DEPTH:
                raise ProtocolError("Protocol error, arrays nested too deep")
            items = []
            for _ in range(count):
                item, pos = self._parse(pos, depth + 1)
                items.append(item)
            return items, pos
        raise ProtocolError(f"Protocol error, got {chr(kind)!r} as reply type byte")


def _reader() -> Any:
    try:
        import hiredis
    except ImportError:
        return PyReader()
    return hiredis.Reader(replyError=ReplyError, protocolError=ProtocolError)


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to connect, from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket
    tls: bool = False
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in logs

    @property
    def address(self) -> str:
        """For messages: never includes the password."""
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"


def parse_url(url: str) -> Target:
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS), ``unix://[…@]/path[?db=N]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"not a redis://, rediss:// or unix:// URL: {parts.scheme}://…")
    query = parse_qs(parts.query)
    if unknown := sorted(set(query) - {"db"}):
        raise ValueError(f"unsupported Redis URL option(s): {', '.join(unknown)} (only db is)")
    db_text = query["db"][-1] if "db" in query else (parts.path.strip("/") if parts.scheme != "unix" else "")
    if db_text and not db_text.isdigit():
        raise ValueError(f"the Redis database must be a number, not {db_text!r}")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if user and password is None:  # redis-py ignores it; a later NOAUTH would hide the mistake
        raise ValueError("a username in a Redis URL needs a password (redis://user:password@host)")
    db = int(db_text or 0)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// Redis URL needs a socket path (unix:///run/redis.sock)")
        return Target(path=parts.path, db=db, username=user, password=password)
    return Target(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, tls=parts.scheme == "rediss",
                  db=db, username=user, password=password)


class _Connection(asyncio.Protocol):
    """One connection and the FIFO of calls waiting for its replies."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float, address: str) -> None:
        self._loop = loop
        self._timeout_s = timeout_s
        self._address = address
        self._reader = _reader()
        self._transport: asyncio.Transport | None = None
        # (future, deadline) in the order the requests were written.
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._out: list[bytes] | None = None  # requests waiting for this turn's joined write
        self._timer: asyncio.TimerHandle | None = None
        self._gone: asyncio.Future[None] = loop.create_future()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes) -> asyncio.Future[Any]:
        """Write one encoded command; the future gets its reply (or raises)."""
        loop = self._loop
        future = loop.create_future()
        if self.closed:  # lost between the slot check and this call
            future.set_exception(Unavailable(f"the connection to {self._address} was lost"))
            return future
        deadline = loop.time() + self._timeout_s
        self._pending.append((future, deadline))
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._check_deadline)
        if self._out is not None:
            self._out.append(request)
        elif len(self._pending) == 1:  # idle connection: nothing to join, write now
            cast(asyncio.Transport, self._transport).write(request)
        else:  # calls in flight: join with whatever else this loop turn sends
            self._out = [request]
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        out, self._out = self._out, None
        if out and not self.closed:
            cast(asyncio.Transport, self._transport).write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        reader, pending = self._reader, self._pending
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except ProtocolError as error:
                self.abort(ProtocolError(f"{error} (from {self._address})"))
                return
            if reply is False:
                return
            if not pending:
                self.abort(ProtocolError(f"a reply from {self._address} that no call asked for"))
                return
            future = pending.popleft()[0]
            if future.done():  # its caller was cancelled; the reply is dropped, the order kept
                continue
            if type(reply) is ReplyError:
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def _check_deadline(self) -> None:
        """One timer per connection, re-armed for the oldest call: not one timer per call."""
        self._timer = None
        if not self._pending or self.closed:
            return
        deadline = self._pending[0][1]
        if deadline <= self._loop.time():
            self.abort(Unavailable(f"no reply from {self._address} within {self._timeout_s:g}s"),
                       Unavailable(f"the connection to {self._address} was closed: "
                                   f"an earlier call on it timed out"))
        else:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._fail_all(Unavailable(f"the connection to {self._address} was lost{reason}"), None)
        if not self._gone.done():
            self._gone.set_result(None)

    def abort(self, first: Unavailable, rest: Unavailable | None = None) -> None:
        """Close now; the oldest pending call fails with ``first``, the others with ``rest``."""
        self._fail_all(first, rest)
        if self._transport is not None:
            self._transport.abort()
        elif not self._gone.done():
            self._gone.set_result(None)

    def _fail_all(self, first: Unavailable, rest: Unavailable | None) -> None:
        self.closed = True
        self._out = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        error = first
        while self._pending:
            future = self._pending.popleft()[0]
            if not future.done():  # a fresh exception each: tasks must not share one traceback
                future.set_exception(type(error)(*error.args))
            error = rest or first

    async def wait_closed(self) -> None:
        await self._gone


class RespClient:
    """Pipelined connections to one Redis server; no retries, no pool locks.

    ``timeout_s`` bounds every call (from its write to its reply);
    ``connect_timeout_s`` (default ``timeout_s``) bounds a connect with its
    AUTH and SELECT. ``ssl_context`` replaces the default verifying context for
    ``rediss://``. Creating a client does no I/O and needs no running loop.
    """

    def __init__(self, url: str, *, timeout_s: float = 0.5, connect_timeout_s: float | None = None,
                 connections: int = 2, ssl_context: ssl.SSLContext | None = None) -> None:
        if connections < 1 or timeout_s <= 0:
            raise ValueError("connections must be >= 1 and timeout_s > 0")
        self.target = parse_url(url)
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s or timeout_s
        self._ssl = (ssl_context or ssl.create_default_context()) if self.target.tls else None
        self._slots: list[_Connection | None] = [None] * connections
        self._connecting: list[asyncio.Task[_Connection] | None] = [None] * connections
        self._next = 0
        self._closed = False

    def call(self, *args: Arg) -> Awaitable[Any]:
        """Send one command; await the result for its reply.

        Returns the connection's future itself when the slot is connected (no
        coroutine per call on the hot path), else a coroutine that connects first.
        Raises ``Unavailable`` or ``ReplyError`` when awaited.
        """
        request = encode(args)
        slot = self._next
        self._next = slot + 1 if slot + 1 < len(self._slots) else 0
        conn = self._slots[slot]
        if conn is not None and not conn.closed:
            return conn.send(request)
        return self._connect_and_send(slot, request)

    async def _connect_and_send(self, slot: int, request: bytes) -> Any:
        if self._closed:
            raise Unavailable("the Redis client is closed")
        task = self._connecting[slot]
        if task is None:
            task = asyncio.get_running_loop().create_task(self._open())
            self._connecting[slot] = task
            task.add_done_callback(lambda done: self._connected(slot, done))
        # Shielded: one caller giving up must not cancel the connect others wait for.
        conn = await asyncio.shield(task)
        return await conn.send(request)

    def _connected(self, slot: int, task: asyncio.Task[_Connection]) -> None:
        self._connecting[slot] = None
        if not task.cancelled() and task.exception() is None:
            self._slots[slot] = task.result()

    async def _open(self) -> _Connection:
        target, loop = self.target, asyncio.get_running_loop()
        conn: _Connection | None = None
        opened = False

        def protocol() -> _Connection:
            nonlocal conn
            conn = _Connection(loop, self._timeout_s, target.address)
            return conn

        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if target.path:
                    await loop.create_unix_connection(protocol, target.path)
                else:
                    await loop.create_connection(protocol, target.host, target.port, ssl=self._ssl,
                                                 server_hostname=target.host if self._ssl else None)
                assert conn is not None
                await self._handshake(conn)
            opened = True
            return conn
        except TimeoutError:  # before OSError: TimeoutError is one
            raise Unavailable(f"connecting to {target.address} timed out after "
                              f"{self._connect_timeout_s:g}s") from None
        except OSError as error:  # refused, unreachable, unknown host, TLS failures
            raise Unavailable(f"cannot connect to {target.address}: {error.strerror or error}") from None
        except asyncio.CancelledError:
            if self._closed:  # close() cancelled us: the callers sharing this connect learn why
                raise Unavailable("the Redis client is closed") from None
            raise
        finally:
            if conn is not None and not opened:
                conn.abort(Unavailable(f"the connection to {target.address} failed while opening"))

    async def _handshake(self, conn: _Connection) -> None:
        """AUTH and SELECT, pipelined, before the connection is handed to any caller."""
        target = self.target
        names: list[str] = []
        sent: list[asyncio.Future[Any]] = []
        if target.password is not None:
            user = [target.username] if target.username else []
            names.append("AUTH")
            sent.append(conn.send(encode(["AUTH", *user, target.password])))
        if target.db:
            names.append("SELECT")
            sent.append(conn.send(encode(["SELECT", target.db])))
        # Every reply is awaited, so none is left with an exception nobody retrieves.
        for name, reply in zip(names, await asyncio.gather(*sent, return_exceptions=True), strict=True):
            if isinstance(reply, ReplyError):
                raise Unavailable(f"{target.address} refused {name}: {reply}")
            if isinstance(reply, BaseException):
                raise reply

    async def close(self) -> None:
        """Close every connection; calls in flight fail with ``Unavailable``. Idempotent."""
        self._closed = True
        tasks = [task for task in self._connecting if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        conns = [conn for conn in self._slots if conn is not None]
        self._slots = [None] * len(self._slots)
        for conn in conns:
            conn.abort(Unavailable("the Redis client was closed"))
        for conn in conns:
            await conn.wait_closed()
