"""Raw ASGI plumbing at the edge of the data plane: body reading, responses, the sink.

The pipeline works on ``RequestFacts`` and a ``ResponseSink``; this module is
where ASGI meets them. Every response leaves through ``respond`` or
``AsgiSink``, so each one carries ``x-request-id`` and
``x-inferenceops-overhead-ms`` (time spent in the gateway, excluding the time
spent waiting on the engine or for its capacity), plus the headers stages
asked for (``RequestFacts.answer_headers``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import suppress
from typing import Any, TypeVar

from inferenceops.error_shape import error_json
from inferenceops.errors import InferenceOpsError, InvalidRequest, PayloadTooLarge
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.sink import ClientGone

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = b"application/json"
T = TypeVar("T")


def response_headers(facts: RequestFacts, content_type: bytes) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", content_type), (b"x-request-id", facts.request_id),
               (b"x-inferenceops-overhead-ms", facts.overhead_ms())]
    headers += facts.answer_headers()
    return headers


def declared_length(facts: RequestFacts) -> int | None:
    """The request's Content-Length when it is a number (for reading only: the *size* stage
    judges it), at most 15 digits, as int() refuses over 4,300 and no body is near a petabyte.
    """
    length = facts.content_length
    return (int(length) if length is not None and len(length) <= 15 and length.isdigit()
            else None)


def early_read(receive: Callable[[], Awaitable[T]]) -> Awaitable[T] | None:
    """The body (ASGI: its first message), asked for now, to be awaited when it is needed.

    granian's ``receive`` (and RSGI's body call) returns a future its own threads complete
    (~40 µs): asked for before the stages run, the hand-over overlaps authentication
    instead of following it. Over RSGI the overlap is partial: granian completes the
    future only once the loop waits (measured on a slow VM: 67 µs awaited after other
    work, 81 µs awaited at once). Other servers' ``receive`` is a coroutine, which would only
    start once awaited: it is closed unstarted (None: read as usual). A future nobody
    awaits — a stranger's body — is dropped with its outcome taken, so nothing is logged
    about it.
    """
    waiter = receive()
    if asyncio.isfuture(waiter):
        waiter.add_done_callback(_taken)
        return waiter
    if inspect.iscoroutine(waiter):
        waiter.close()
        return None
    return waiter


def _taken(waiter: asyncio.Future[Any]) -> None:
    if not waiter.cancelled():
        waiter.exception()  # marks it retrieved: an unread failure is not "never retrieved"


async def read_body(receive: Receive, limit: int, declared: int | None = None,
                    first: Awaitable[Message] | None = None) -> bytes:
    """The whole request body, refused with 413 as soon as it exceeds ``limit``.

    ``first``: the first message, already asked for (``early_read``).

    ``declared`` is the request's Content-Length: once that many bytes are in, the body is
    whole (a server hands the header over only when it frames the body: granian drops it
    beside a Transfer-Encoding), and the server's closing empty message is not waited for.
    granian hands a body over as one message marked ``more_body`` and then an empty last
    one: waiting for that is another round trip through its threads (~45 µs measured)
    before anything can go to the engine. The unread message is harmless: ``AsgiSink.gone``
    takes a message that is not a disconnect for what it is and watches on.
    """
    message = await (receive() if first is None else first)
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False) or len(body) == declared:
        if len(body) > limit:
            raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False) and size != declared:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("The client disconnected before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
        parts.append(chunk)
    return b"".join(parts)


async def respond(send: Send, facts: RequestFacts, status: int, body: bytes,
                  content_type: bytes = _JSON,
                  extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = response_headers(facts, content_type)
    headers.append((b"content-length", b"%d" % len(body)))
    if extra_headers:
        headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_error(send: Send, facts: RequestFacts, exc: InferenceOpsError) -> None:
    extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()] or None
    await respond(send, facts, exc.status, error_json(exc), extra_headers=extra)


class AsgiSink:
    """The pipeline's ``ResponseSink`` over one ASGI request's ``send`` and ``receive``.

    ``gone`` watches for the caller leaving mid-stream with one pending ``receive``,
    from the loop's next turn: a chunk the engine already sent goes out first, and
    the watch (granian hands the wait to one of its threads) starts while the stream
    waits for the engine anyway — at once when nothing has arrived, so a caller
    leaving during a long prefill still frees the engine. granian's ``receive``
    returns a future, watched with a callback (no task to create, step and cancel per
    stream); other servers' ``receive`` is a coroutine, driven by a task. ``end``
    stops watching before the last message, so the end of a stream does not wake the
    event loop a second time.
    """

    __slots__ = ("_send", "_receive", "_started", "_gone", "_waiter", "_arming")

    def __init__(self, send: Send, receive: Receive) -> None:
        self._send = send
        self._receive = receive
        self._started = False
        self._gone: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[Message] | None = None  # the pending receive()
        self._arming: asyncio.Handle | None = None

    @property
    def started(self) -> bool:
        return self._started

    async def complete(self, facts: RequestFacts, status: int, content_type: bytes,
                       body: bytes) -> None:
        self._started = True
        await respond(self._send, facts, status, body, content_type=content_type)

    async def start(self, facts: RequestFacts, status: int, content_type: bytes) -> None:
        headers = response_headers(facts, content_type)
        headers.append((b"cache-control", b"no-cache"))
        self._started = True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, chunk: bytes) -> None:
        try:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError:
            raise ClientGone() from None

    async def end(self) -> None:
        self._stop_watching()
        with suppress(OSError):  # the caller left at the very end: nothing to tell them
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def fail(self, error_event: bytes) -> None:
        """The last words of a stream that already started (its status cannot change)."""
        self._stop_watching()
        with suppress(OSError):  # the caller is gone: nothing left to tell
            await self._send({"type": "http.response.body", "body": error_event,
                              "more_body": False})

    def gone(self) -> asyncio.Future[None]:
        """Resolves when the caller disconnects (the request body was read whole before)."""
        if self._gone is None:
            loop = asyncio.get_running_loop()
            self._gone = loop.create_future()
            self._gone.add_done_callback(self._on_gone_done)
            self._arming = loop.call_soon(self._watch)
        return self._gone

    def _watch(self) -> None:
        self._arming = None
        waiter = self._receive()
        if asyncio.isfuture(waiter):  # granian: a future already, completed from its threads
            self._waiter = waiter
            waiter.add_done_callback(self._on_message)
        else:
            task = asyncio.ensure_future(waiter)
            self._waiter = task
            task.add_done_callback(self._on_message)

    def _on_message(self, waiter: asyncio.Future[Message]) -> None:
        gone = self._gone
        if waiter is not self._waiter or waiter.cancelled() or gone is None or gone.done():
            return
        self._waiter = None
        if waiter.exception() is not None or waiter.result()["type"] == "http.disconnect":
            gone.set_result(None)
        else:  # not a disconnect (a server may repeat an empty body message): watch on
            self._watch()

    def _on_gone_done(self, gone: asyncio.Future[None]) -> None:
        if gone.cancelled():  # the stream is over: nothing to watch for any more
            self._stop_watching()

    def _stop_watching(self) -> None:
        if self._arming is not None:
            self._arming.cancel()
            self._arming = None
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.remove_done_callback(self._on_message)
            waiter.cancel()
