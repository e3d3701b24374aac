"""Raw ASGI plumbing shared by the handlers: context, body reading, responses.

Every response leaves through ``respond``/``start_stream`` so each one carries
``x-request-id`` and ``x-inferenceops-overhead-ms`` (time spent in the gateway,
excluding the time spent waiting on the engine).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from inferenceops.error_shape import error_json
from inferenceops.errors import InferenceOpsError, InvalidRequest, PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = b"application/json"
_MAX_REQUEST_ID = 128


class RequestContext:
    """Per-request facts the stages share; lives for one request only."""

    __slots__ = ("request_id", "started", "upstream_s", "authorization", "content_length",
                 "priority", "response_started", "extra_headers")

    def __init__(self, scope: Scope) -> None:
        self.started = time.perf_counter()
        self.upstream_s = 0.0
        self.response_started = False
        #: Set by stages that have something to say on every response (e.g. x-ratelimit-*).
        self.extra_headers: list[tuple[bytes, bytes]] | None = None
        request_id = authorization = content_length = priority = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"x-request-id":
                request_id = value
            elif name == b"content-length":
                content_length = value
            elif name == b"x-inferenceops-priority":
                priority = value
        self.authorization: bytes | None = authorization
        self.content_length: bytes | None = content_length
        self.priority: bytes | None = priority
        if request_id and len(request_id) <= _MAX_REQUEST_ID and request_id.isascii() \
                and all(33 <= c < 127 for c in request_id):
            self.request_id = request_id
        else:
            self.request_id = os.urandom(12).hex().encode()

    def overhead_ms(self) -> bytes:
        elapsed = time.perf_counter() - self.started - self.upstream_s
        return b"%.3f" % (elapsed * 1000.0)

    def headers(self, content_type: bytes) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", content_type), (b"x-request-id", self.request_id),
                   (b"x-inferenceops-overhead-ms", self.overhead_ms())]
        if self.extra_headers:
            headers += self.extra_headers
        return headers


def check_declared_size(ctx: RequestContext, limit: int) -> None:
    """Refuse a body whose Content-Length is over ``limit`` before reading any of it."""
    if ctx.content_length is not None:
        try:
            declared = int(ctx.content_length)
        except ValueError:
            raise InvalidRequest("The Content-Length header is not a number.") from None
        if declared > limit:
            raise PayloadTooLarge(f"The request body is {declared} bytes; the limit is {limit}.")


async def read_body(receive: Receive, ctx: RequestContext, limit: int) -> bytes:
    """The whole request body, refused with 413 as soon as it exceeds ``limit``."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("The client disconnected before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
        parts.append(chunk)
    return b"".join(parts)


async def respond(send: Send, ctx: RequestContext, status: int, body: bytes,
                  content_type: bytes = _JSON,
                  extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = ctx.headers(content_type)
    headers.append((b"content-length", b"%d" % len(body)))
    if extra_headers:
        headers.extend(extra_headers)
    ctx.response_started = True
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def start_stream(send: Send, ctx: RequestContext, status: int, content_type: bytes) -> None:
    headers = ctx.headers(content_type)
    headers.append((b"cache-control", b"no-cache"))
    ctx.response_started = True
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def respond_error(send: Send, ctx: RequestContext, exc: InferenceOpsError) -> None:
    extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()] or None
    await respond(send, ctx, exc.status, error_json(exc), extra_headers=extra)
