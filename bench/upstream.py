"""The thinnest OpenAI-compatible mock upstream, so the benchmark measures the gateway.

Every answer is pre-encoded at import time: a fixed ``chat.completion`` JSON
(~300 bytes), or with ``"stream": true`` a fixed SSE stream of ``SSE_CHUNKS``
small chunks plus ``data: [DONE]``, each sent as its own body message (the way
a real engine emits tokens). The request body is read (as a real engine must)
but only scanned for a few bytes (``"stream":true``, the paced model's name,
``"include_usage":true``); nothing is parsed as JSON.

The model ``PACED_MODEL`` streams the way a token generator does:
``PACED_CHUNKS`` content chunks ``PACED_GAP_S`` apart, then — only when the
request asked (``stream_options.include_usage``, as an engine honours it) — a
usage chunk with empty ``choices``, then ``[DONE]``. It measures what a
forwarder adds to a whole stream (``bench.stream``). Chunk *i* is due
``i × PACED_GAP_S`` after the first, on the clock, not after the previous
sleep: the event loop's timers are millisecond-grained and wake late under
load, and with relative sleeps that slack piled up over 19 gaps (measured:
the upstream's own 20-chunk stream took 42.8–45.5 ms from block to block, more
than what a forwarder adds); with a schedule, one late wake-up is all a
stream can lose.

Two interfaces are offered, both served by granian with one worker:

* ``asgi`` – raw ASGI3, the same interface the gateway uses;
* ``rsgi`` – granian's native interface, which skips the ASGI message dicts.

``python -m bench.run`` measures the upstream alone (the "direct" numbers) in
every run, so whether the upstream is fast enough is always in the report.

Run standalone: ``python -m bench.upstream --port 18001 [--interface rsgi]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

MODEL = "bench-model"
SSE_CHUNKS = 8
PACED_MODEL = "bench-paced"
PACED_CHUNKS = 20
PACED_GAP_S = 0.002

Message = MutableMapping[str, Any]

COMPLETION: bytes = orjson.dumps({
    "id": "chatcmpl-bench0000000000000000",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": MODEL,
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant",
                             "content": "Hello! This is a fixed answer from the bench upstream."}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 12, "total_tokens": 24},
})


def _sse_chunk(index: int, count: int = SSE_CHUNKS, model: str = MODEL) -> bytes:
    delta: dict[str, str] = {"content": f"tok{index} "}
    if index == 0:
        delta["role"] = "assistant"
    finish = "stop" if index == count - 1 else None
    doc = {"id": "chatcmpl-bench0000000000000000", "object": "chat.completion.chunk",
           "created": 1_700_000_000, "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(doc) + b"\n\n"


DONE = b"data: [DONE]\n\n"
STREAM_CHUNKS: tuple[bytes, ...] = (*(_sse_chunk(i) for i in range(SSE_CHUNKS)), DONE)
#: The paced stream's content chunks; ``PACED_USAGE`` follows them only when asked for.
PACED_STREAM_CHUNKS: tuple[bytes, ...] = tuple(_sse_chunk(i, PACED_CHUNKS, PACED_MODEL)
                                               for i in range(PACED_CHUNKS))
PACED_USAGE: bytes = b"data: " + orjson.dumps({
    "id": "chatcmpl-bench0000000000000000", "object": "chat.completion.chunk",
    "created": 1_700_000_000, "model": PACED_MODEL, "choices": [],
    "usage": {"prompt_tokens": 12, "completion_tokens": PACED_CHUNKS,
              "total_tokens": 12 + PACED_CHUNKS}}) + b"\n\n"
_STREAM_FLAG = b'"stream":true'
_PACED_FLAG = b'"model":"%s"' % PACED_MODEL.encode()
_USAGE_FLAG = b'"include_usage":true'
_HEALTH = b'{"status":"ok"}'

_JSON_HEADERS_ASGI = [(b"content-type", b"application/json"),
                      (b"content-length", b"%d" % len(COMPLETION))]
_HEALTH_HEADERS_ASGI = [(b"content-type", b"application/json"),
                        (b"content-length", b"%d" % len(_HEALTH))]
_SSE_HEADERS_ASGI = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def _wants_stream(body: bytes) -> bool:
    """A byte scan, tolerant of one space after the colon; enough for the bench's own bodies."""
    return _STREAM_FLAG in body or b'"stream": true' in body


def _paced(body: bytes) -> tuple[bytes, ...] | None:
    """The paced stream's chunks (its usage chunk only when asked for), or None: not paced."""
    if _PACED_FLAG not in body and b'"model": "%s"' % PACED_MODEL.encode() not in body:
        return None
    usage = _USAGE_FLAG in body or b'"include_usage": true' in body
    return (*PACED_STREAM_CHUNKS, *((PACED_USAGE,) if usage else ()), DONE)


async def _send_paced(chunks: tuple[bytes, ...], send: Callable[[bytes], Awaitable[None]]) -> None:
    """Content chunk *i* at ``i × PACED_GAP_S`` after the first; usage and [DONE] with the last."""
    started = time.perf_counter()
    for i, chunk in enumerate(chunks):
        if 0 < i < PACED_CHUNKS:
            await asyncio.sleep(max(0.0, started + i * PACED_GAP_S - time.perf_counter()))
        await send(chunk)


async def asgi_app(scope: Message, receive: Callable[[], Awaitable[Message]],
                   send: Callable[[Message], Awaitable[None]]) -> None:
    """ASGI3: POST anything → completion or SSE; GET anything → health JSON."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await send({"type": "http.response.start", "status": 200, "headers": _HEALTH_HEADERS_ASGI})
        await send({"type": "http.response.body", "body": _HEALTH})
        return
    message = await receive()
    body: bytes = message.get("body", b"")
    while message.get("more_body", False):
        message = await receive()
        body += message.get("body", b"")
    if not _wants_stream(body):
        await send({"type": "http.response.start", "status": 200, "headers": _JSON_HEADERS_ASGI})
        await send({"type": "http.response.body", "body": COMPLETION})
        return
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS_ASGI})

    async def send_chunk(chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})

    paced = _paced(body)
    if paced is not None:
        await _send_paced(paced, send_chunk)
    else:
        for chunk in STREAM_CHUNKS:
            await send_chunk(chunk)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


_JSON_HEADERS_RSGI = [("content-type", "application/json")]
_SSE_HEADERS_RSGI = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]


class RSGIApp:
    """granian's native interface: the same answers without ASGI message dicts."""

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.method != "POST":
            protocol.response_bytes(200, _JSON_HEADERS_RSGI, _HEALTH)
            return
        body: bytes = await protocol()
        if not _wants_stream(body):
            protocol.response_bytes(200, _JSON_HEADERS_RSGI, COMPLETION)
            return
        transport = protocol.response_stream(200, _SSE_HEADERS_RSGI)
        paced = _paced(body)
        if paced is not None:
            await _send_paced(paced, transport.send_bytes)
            return
        for chunk in STREAM_CHUNKS:
            await transport.send_bytes(chunk)


rsgi_app = RSGIApp()


def serve(port: int, interface: str, host: str = "127.0.0.1") -> None:
    """Serve with granian, one worker, in this process (granian forks the worker)."""
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    target = "bench.upstream:asgi_app" if interface == "asgi" else "bench.upstream:rsgi_app"
    Server(target, address=host, port=port, workers=1, backlog=2048, loop=Loops.auto,
           interface=Interfaces.ASGI if interface == "asgi" else Interfaces.RSGI,
           log_level=LogLevels.warning, log_access=False).serve()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18001)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--interface", choices=("asgi", "rsgi"), default="rsgi")
    args = parser.parse_args(argv)
    serve(args.port, args.interface, args.host)


if __name__ == "__main__":
    main()
