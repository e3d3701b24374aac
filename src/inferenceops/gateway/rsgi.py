"""The RSGI edge: how granian serves the data plane (uvicorn and tests use the ASGI one).

granian's native interface (RSGI) hands a request's body over with one call and
takes a response as a status, header list and bytes — no per-message dicts, no
``more_body`` round trip through its threads. Measured beside the ASGI gateway in the
same runs: 12% more requests/s at 11% less CPU a request
(``bench/results/versus-latest.md``) and 0.04–0.06 ms less per whole stream (a minimal
forwarder gains ~0.1 ms): the inference routes are served here natively. Every other
request (admin API, Files and Batch APIs, the simulators, ``/v1/models``, ``/metrics``,
health) goes through ``AsgiBridge`` to the same ASGI application, so there is one router
and one implementation of each of them.

What stays the same under both interfaces: the pipeline (``RsgiSink`` is its
``ResponseSink``), the body limit (a body is never buffered past it), the peer as
the client address, and the error boundary's OpenAI error shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from inferenceops.error_shape import error_json, internal_error, sse_error_event
from inferenceops.errors import InferenceOpsError, InvalidRequest, PayloadTooLarge
from inferenceops.gateway.http import ASGIApp, Message, declared_length, early_read
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.sink import ClientGone

if TYPE_CHECKING:
    from inferenceops.gateway.state import GatewayState
    from inferenceops.platform import Endpoint

Headers = list[tuple[str, str]]
_SSE_EXTRA = ("cache-control", "no-cache")


class RsgiScope(Protocol):  # what granian hands over (``granian.rsgi.Scope``)
    http_version: str
    scheme: str
    method: str
    path: str
    query_string: str
    client: str
    server: str

    @property
    def headers(self) -> Any: ...


class RsgiProtocol(Protocol):  # ``granian.rsgi.HTTPProtocol``
    def __call__(self) -> Awaitable[bytes]: ...
    def __aiter__(self) -> Any: ...
    def client_disconnect(self) -> Awaitable[None]: ...
    def response_bytes(self, status: int, headers: Headers, body: bytes) -> None: ...
    def response_stream(self, status: int, headers: Headers) -> Any: ...


_FACT_HEADERS = tuple((name, name.encode()) for name in (
    "authorization", "x-request-id", "content-length", "x-inferenceops-priority",
    "x-inferenceops-session"))


def facts_from_rsgi(scope: RsgiScope) -> RequestFacts:
    """``RequestFacts.from_headers`` over granian's header map (values arrive as text; one
    whose bytes are not UTF-8 is not handed over at all)."""
    get = scope.headers.get
    return RequestFacts.from_headers((raw, value.encode()) for name, raw in _FACT_HEADERS
                                     if (value := get(name)) is not None)


def _headers(facts: RequestFacts, content_type: bytes, *extra: tuple[str, str]) -> Headers:
    headers = [("content-type", content_type.decode("latin-1")),
               ("x-request-id", facts.request_id.decode("latin-1")),
               ("x-inferenceops-overhead-ms", facts.overhead_ms().decode())]
    headers += [(k.decode("latin-1"), v.decode("latin-1")) for k, v in facts.answer_headers()]
    headers += extra
    return headers


def respond_error(proto: RsgiProtocol, facts: RequestFacts, exc: InferenceOpsError) -> None:
    extra = [(k.lower(), v) for k, v in exc.headers.items()]
    proto.response_bytes(exc.status, _headers(facts, b"application/json", *extra),
                         error_json(exc))


async def read_body(proto: RsgiProtocol, limit: int, declared: int | None,
                    first: Awaitable[bytes] | None) -> bytes:
    """The whole body, refused with 413 as soon as it exceeds ``limit``.

    A declared length within the limit (the *size* stage refuses one over it) is read in one
    call — the server frames the body by it, so it cannot grow past it; ``first`` is that
    call, made when the request arrived. A body without a length is read piece by piece
    and refused as soon as it passes the limit, never buffered whole first.
    """
    if first is not None:
        return await first
    if declared is not None and declared <= limit:
        return await proto()
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in proto:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
            parts.append(chunk)
    except RuntimeError as exc:  # granian's ProtocolClosed: the client left mid-body
        raise InvalidRequest("The client disconnected before sending the whole body.") from exc
    return b"".join(parts)


class RsgiSink:
    """The pipeline's ``ResponseSink`` over one RSGI request.

    RSGI has no last message: granian ends a stream when its transport is released, so
    ``end`` lets go of it — the caller has the whole answer before *settle* runs, as with
    ASGI's last message. ``write`` raises ``ClientGone`` once the transport is closed.
    """

    __slots__ = ("_proto", "_transport", "_started", "_gone", "_watch")

    def __init__(self, proto: RsgiProtocol) -> None:
        self._proto = proto
        self._transport: Any = None
        self._started = False
        self._gone: asyncio.Future[None] | None = None
        self._watch: asyncio.Future[None] | None = None

    @property
    def started(self) -> bool:
        return self._started

    async def complete(self, facts: RequestFacts, status: int, content_type: bytes,
                       body: bytes) -> None:
        self._started = True
        self._proto.response_bytes(status, _headers(facts, content_type), body)

    async def start(self, facts: RequestFacts, status: int, content_type: bytes) -> None:
        self._started = True
        self._transport = self._proto.response_stream(status,
                                                      _headers(facts, content_type, _SSE_EXTRA))

    async def write(self, chunk: bytes) -> None:
        try:
            await self._transport.send_bytes(chunk)
        except (RuntimeError, OSError):  # granian's ProtocolClosed: the caller is gone
            raise ClientGone() from None

    async def end(self) -> None:
        self._stop_watching()
        self._transport = None  # the last reference: granian finishes the response now

    async def fail(self, error_event: bytes) -> None:
        """The last words of a stream that already started (its status cannot change)."""
        self._stop_watching()
        transport, self._transport = self._transport, None
        if transport is not None:
            with suppress(RuntimeError, OSError):
                await transport.send_bytes(error_event)

    def gone(self) -> asyncio.Future[None]:
        """Resolves when the caller disconnects."""
        if self._gone is None:
            self._gone = asyncio.get_running_loop().create_future()
            self._watch = asyncio.ensure_future(self._proto.client_disconnect())
            self._watch.add_done_callback(self._on_disconnect)
            self._gone.add_done_callback(self._on_gone_done)
        return self._gone

    def _on_disconnect(self, watch: asyncio.Future[None]) -> None:
        gone = self._gone
        if not watch.cancelled():
            watch.exception()  # taken: a failed watch is a gone caller, not a log line
        if gone is not None and not gone.done() and not watch.cancelled():
            gone.set_result(None)

    def _on_gone_done(self, gone: asyncio.Future[None]) -> None:
        if gone.cancelled():
            self._stop_watching()

    def _stop_watching(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and not watch.done():
            watch.remove_done_callback(self._on_disconnect)
            watch.cancel()


def _address(text: str | None) -> tuple[str, int] | None:
    """``"host:port"`` (IPv6 bracketed or not) → ASGI's ``(host, port)``."""
    if not text:
        return None
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        return (text.strip("[]"), 0)
    return (host.strip("[]"), int(port))


class AsgiBridge:
    """Serves one RSGI request with an ASGI application (the routes that are not hot)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: RsgiScope, proto: RsgiProtocol) -> None:
        asgi_scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": scope.http_version, "method": scope.method, "scheme": scope.scheme,
            "path": scope.path, "raw_path": quote(scope.path).encode(),
            "query_string": scope.query_string.encode("latin-1"), "root_path": "",
            "headers": [(k.encode("latin-1"), v.encode("latin-1"))
                        for k, v in scope.headers.items()],
            "client": _address(scope.client), "server": _address(scope.server),
        }
        exchange = _Exchange(proto)
        await self.app(asgi_scope, exchange.receive, exchange.send)


class _Exchange:
    """ASGI ``receive``/``send`` over one RSGI request."""

    __slots__ = ("_proto", "_body", "_status", "_headers", "_transport", "_done")

    def __init__(self, proto: RsgiProtocol) -> None:
        self._proto = proto
        self._body: Any = None  # the body's iterator, once reading began
        self._status = 200
        self._headers: Headers = []
        self._transport: Any = None
        self._done = False  # the body was handed over whole

    async def receive(self) -> Message:
        if not self._done:
            if self._body is None:
                self._body = self._proto.__aiter__()
            try:
                chunk = await self._body.__anext__()
            except StopAsyncIteration:
                self._done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            except RuntimeError:  # granian's ProtocolClosed
                self._done = True
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": chunk, "more_body": True}
        with suppress(RuntimeError):
            await self._proto.client_disconnect()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._status = message["status"]
            self._headers = [(k.decode("latin-1"), v.decode("latin-1"))
                             for k, v in message.get("headers", ())]
        elif kind == "http.response.body":
            body: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            if self._transport is None and not more:
                self._proto.response_bytes(self._status, self._headers, body)
                return
            transport = self._transport
            if transport is None:
                transport = self._proto.response_stream(self._status, self._headers)
            # Released after the last body: granian ends the response when nothing holds it.
            self._transport = transport if more else None
            if body:
                try:
                    await transport.send_bytes(body)
                except RuntimeError as exc:  # the ASGI contract: OSError once the client left
                    raise OSError("the client disconnected") from exc


async def serve_inference(state: GatewayState, endpoint: Endpoint, scope: RsgiScope,
                          proto: RsgiProtocol) -> None:
    """One inference request through the pipeline — ``handlers.inference`` and the ASGI
    app's error boundary, over RSGI. The body is asked for at once (``early_read``) and
    taken when the *parse* stage needs it, after authentication."""
    facts = facts_from_rsgi(scope)
    facts.endpoint = endpoint
    sink = RsgiSink(proto)
    try:
        limit = state.pipeline.max_body_bytes
        declared = declared_length(facts)
        first = early_read(proto) if declared is not None and 0 < declared <= limit else None

        async def body() -> bytes:
            return await read_body(proto, limit, declared, first)

        facts.body_source = body
        await state.pipeline.run(state.snapshot, facts, sink)
    except InferenceOpsError as exc:
        await _fail(proto, facts, sink, exc)
    except Exception as exc:  # the top-level boundary: log it, answer 500, keep serving
        await _fail(proto, facts, sink, internal_error(exc))


async def _fail(proto: RsgiProtocol, facts: RequestFacts, sink: RsgiSink,
                exc: InferenceOpsError) -> None:
    if sink.started:  # too late for a status: finish the stream with an error event
        await sink.fail(sse_error_event(exc))
        return
    respond_error(proto, facts, exc)
