"""Minimal raw-ASGI plumbing for the simulator: types, body reading, sending, disconnects.

Kept apart from the handlers so they read as "parse → submit → answer". No
framework: every response is one or two ``send`` calls with pre-encoded headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import ClientGone, PayloadTooLarge, SimulatorError

__all__ = [
    "ASGIApp",
    "json_headers",
    "Receive",
    "Scope",
    "Send",
    "read_body",
    "safe_send",
    "send_bytes",
    "send_error",
    "start_watcher",
    "watch_disconnect",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 32 * 1024 * 1024
_SIM_HEADER = (b"x-simulator", b"inferenceops")
JSON_TYPE = b"application/json"
TEXT_TYPE = b"text/plain; charset=utf-8"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    _SIM_HEADER,
]


async def read_body(receive: Receive) -> bytes:
    """The whole request body; raises ClientGone on disconnect, PayloadTooLarge over the cap."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def json_headers(length: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", JSON_TYPE),
        (b"content-length", str(length).encode()),
        _SIM_HEADER,
    ]


async def send_bytes(
    send: Send,
    body: bytes,
    *,
    status: int = 200,
    content_type: bytes = JSON_TYPE,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        _SIM_HEADER,
    ]
    if extra_headers:
        headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: SimulatorError) -> None:
    extra = [(b"allow", exc.allow.encode())] if exc.allow else None
    await send_bytes(send, exc.body(), status=exc.status, extra_headers=extra)


async def safe_send(send: Send, message: Message) -> bool:
    """Send ``message``; False when the connection is gone.

    Servers differ in what they raise on a closed connection (OSError,
    RuntimeError, their own ClientDisconnected), so this boundary catches
    Exception: any failure here means "stop streaming and free the sequence".
    """
    try:
        await send(message)
    except Exception:
        return False
    return True


async def watch_disconnect(receive: Receive, on_disconnect: Callable[[], None]) -> None:
    """Run as a task while a response is produced: call ``on_disconnect`` if the client leaves."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            on_disconnect()
            return


def start_watcher(receive: Receive, on_disconnect: Callable[[], None]) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(watch_disconnect(receive, on_disconnect))
