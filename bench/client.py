"""A lean HTTP/1.1 client for the 1-client latency and time-to-first-chunk numbers.

Why not aiohttp or httpx: at a fraction of a millisecond per request the
client's own cost would dominate and add noise. This one sends a request built
once as bytes over a keep-alive asyncio stream, reads the status line and
headers with one ``readuntil``, and the body by ``Content-Length`` or by
chunked framing. Direct and gateway requests go through exactly the same code,
so the client's cost cancels out of the difference.

It only speaks what the benchmark needs (HTTP/1.1, keep-alive, no
redirects, no compression) and fails loudly on anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

_HEAD_END = b"\r\n\r\n"
_CRLF = b"\r\n"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_CHUNKED = b"\r\ntransfer-encoding: chunked"
_OVERHEAD = b"\r\nx-inferenceops-overhead-ms:"
_DONE = b"data: [DONE]"


class ProtocolError(RuntimeError):
    """The server answered something this client does not expect (non-200, bad framing)."""


def build_request(host: str, port: int, path: str, body: bytes, api_key: str) -> bytes:
    """The whole request as bytes, built once and written as-is for every request."""
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
            f"Accept: */*\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


def _header_value(lower_head: bytes, marker: bytes) -> bytes | None:
    start = lower_head.find(marker)
    if start < 0:
        return None
    start += len(marker)
    return lower_head[start:lower_head.index(_CRLF, start)].strip()


@dataclass(slots=True)
class Exchange:
    """One request/response: the full latency, first-chunk time and the gateway's header.

    ``done_s``: when the chunk holding ``data: [DONE]`` had been read whole (a stream's
    last event; the chunked terminator follows it).
    """

    latency_s: float
    first_chunk_s: float | None
    overhead_ms: float | None
    body: bytes
    done_s: float | None = None


@dataclass
class Samples:
    """What a sequential block recorded, in seconds (overheads in ms)."""

    latencies: list[float] = field(default_factory=list)
    first_chunks: list[float] = field(default_factory=list)
    overheads_ms: list[float] = field(default_factory=list)
    dones: list[float] = field(default_factory=list)


class Connection:
    """One keep-alive connection that sends the same pre-built request again and again."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 request: bytes) -> None:
        self._reader = reader
        self._writer = writer
        self._request = request

    @classmethod
    async def open(cls, host: str, port: int, request: bytes) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer, request)

    async def exchange(self, keep_body: bool = False) -> Exchange:
        reader = self._reader
        started = time.perf_counter()
        self._writer.write(self._request)
        head = await reader.readuntil(_HEAD_END)
        first: float | None = None
        done: float | None = None
        if head[9:12] != b"200":
            raise ProtocolError(f"expected 200, got: {head[:200]!r}")
        lower = head.lower()
        length = _header_value(lower, _CONTENT_LENGTH)
        parts: list[bytes] = []
        if length is not None:
            body = await reader.readexactly(int(length))
        elif _CHUNKED in lower:
            while True:
                size = int((await reader.readuntil(_CRLF)).split(b";", 1)[0], 16)
                if size == 0:
                    await reader.readuntil(_CRLF)  # end of (empty) trailers
                    break
                chunk = await reader.readexactly(size + 2)
                if first is None:
                    first = time.perf_counter() - started
                if done is None and _DONE in chunk:
                    done = time.perf_counter() - started
                if keep_body:
                    parts.append(chunk[:-2])
            body = b"".join(parts)
        else:
            raise ProtocolError(f"response without length or chunking: {head[:200]!r}")
        elapsed = time.perf_counter() - started
        overhead = _header_value(lower, _OVERHEAD)
        return Exchange(elapsed, first, float(overhead) if overhead is not None else None,
                        body if keep_body or length is not None else b"", done)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


async def sequential(conn: Connection, count: int, samples: Samples) -> None:
    """``count`` back-to-back requests on one connection, appended to ``samples``."""
    lat, first, over = samples.latencies, samples.first_chunks, samples.overheads_ms
    for _ in range(count):
        ex = await conn.exchange()
        lat.append(ex.latency_s)
        if ex.first_chunk_s is not None:
            first.append(ex.first_chunk_s)
        if ex.overhead_ms is not None:
            over.append(ex.overhead_ms)
        if ex.done_s is not None:
            samples.dones.append(ex.done_s)


async def fixed_count(host: str, port: int, request: bytes, total: int, connections: int) -> float:
    """Exactly ``total`` requests over ``connections`` concurrent connections; wall seconds."""
    conns = [await Connection.open(host, port, request) for _ in range(connections)]
    remaining = total

    async def worker(conn: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await conn.exchange()

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    return time.perf_counter() - started
