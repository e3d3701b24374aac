"""Forwarding to an engine: pick a replica, send the bytes, pass the answer through.

Non-streaming answers are read whole and sent in one message. Streaming
answers go through chunk by chunk as they arrive, never buffered. A refused
connection (the request never reached the engine) is retried on another
replica before the first byte; nothing is retried once an engine has the
request. A failure after the stream has started cannot change the status
(already 200), so it is told to the client as a final SSE ``error`` event.
A client that goes away mid-stream closes the upstream connection, which
frees the engine's slot.

What the engine used is written to an ``Outcome`` the caller passed in (it
survives exceptions): whether the request reached an engine, the usage it
reported, and for a stream how many events went out. Usage is only looked for
when the caller asks (``track_usage``): admission needs it to settle. An answer
that is not one (an error, a redirect, a body that is not JSON or too large)
reached the engine and used nothing: it is settled so, never charged.

What a caller learns of an engine's failure: every upstream error carries the
request id (``error.request_id``); what the engine said (``UpstreamError.detail``,
already redacted of secrets) is logged under that id, and shown as
``error.upstream`` only to callers that may see the platform's internals
(``sees_upstream_detail``). Error events inside a stream are redacted on the
way through (``SSEErrorScrubber``); nothing else of a stream is touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from dataclasses import dataclass

import orjson

from inferenceops.engines.openai_compat import OpenAICompatClient, UpstreamResponse
from inferenceops.engines.redaction import SSEErrorScrubber
from inferenceops.error_shape import sse_error_event
from inferenceops.errors import InferenceOpsError, UpstreamClientError, UpstreamError
from inferenceops.gateway.http import Receive, RequestContext, Send, respond, start_stream
from inferenceops.metering.usage import Usage, UsageTap, parse_usage, request_stream_usage
from inferenceops.pipeline.request import InferenceRequest
from inferenceops.platform import ApiKey, Deployment, Endpoint
from inferenceops.platform.identity import PLATFORM_ADMIN, SCOPE_ADMIN
from inferenceops.routing import LeastOutstanding

log = logging.getLogger("inferenceops.gateway.upstream")

_NOTHING_USED = Usage(0, 0)
#: Platform roles that see what an engine said when it failed (as on /metrics: both read
#: everything of the platform; a team's own admins do not see its engines' internals).
_SEE_INTERNALS = (PLATFORM_ADMIN, "auditor")


def sees_upstream_detail(key: ApiKey) -> bool:
    """Whether ``key``'s caller is shown what an engine said when it failed (``error.upstream``).

    Tracebacks, paths and host names belong to the platform team: only a platform
    key (no team) with the admin scope whose owner reads the whole platform.
    """
    return key.team_id is None and SCOPE_ADMIN in key.scopes \
        and key.principal.platform_role in _SEE_INTERNALS


@dataclass(slots=True)
class Outcome:
    """How a forwarded request ended, as far as settlement needs to know."""

    reached_engine: bool = False
    usage: Usage | None = None  # as reported by the engine; nothing used on an error answer
    streamed_events: int | None = None  # content events sent, for a stream that started


class Forwarder:
    __slots__ = ("_client", "_balancer")

    def __init__(self, client: OpenAICompatClient, balancer: LeastOutstanding) -> None:
        self._client = client
        self._balancer = balancer

    async def forward(self, deployment: Deployment, endpoint: Endpoint, request: InferenceRequest,
                      ctx: RequestContext, receive: Receive, send: Send,
                      outcome: Outcome | None = None, track_usage: bool = False,
                      reveal_upstream: bool = False) -> None:
        """``reveal_upstream``: the caller may see what a failing engine said (see module doc)."""
        body = request.body
        doc = request.doc
        tap = None
        if track_usage and request.stream:
            tap = UsageTap(hide_usage_chunk=not request_stream_usage(doc))
        if request.model != deployment.served_model or (tap is not None and tap.hides):
            doc["model"] = deployment.served_model
            body = orjson.dumps(doc)
        client = self._client
        tried: list[str] = []
        while True:  # another replica only when the last one provably never got the request
            replica = self._balancer.pick(deployment, tried)
            self._balancer.acquire(replica)
            started = time.perf_counter()
            try:
                try:
                    if request.stream:
                        upstream = await client.open_stream(deployment, replica, endpoint.value, body)
                    else:
                        answer = await client.complete(deployment, replica, endpoint.value, body)
                finally:
                    ctx.upstream_s += time.perf_counter() - started
                if request.stream:
                    if outcome is not None:
                        outcome.reached_engine = True
                        outcome.streamed_events = 0
                    await _stream(upstream, ctx, receive, send, tap, outcome,
                                  SSEErrorScrubber(client.redactor), reveal_upstream)
                else:
                    if outcome is not None:
                        outcome.reached_engine = True
                        outcome.usage = (_NOTHING_USED if answer.status != 200 else
                                         parse_usage(answer.doc.get("usage")) if track_usage
                                         else None)
                    await respond(send, ctx, answer.status, answer.body,
                                  content_type=answer.content_type)
                return
            except InferenceOpsError as exc:
                tried.append(replica.id)
                if not (exc.retryable and len(tried) < len(deployment.replicas)):
                    if outcome is not None and not exc.retryable and not outcome.reached_engine:
                        outcome.reached_engine = True  # it got there and failed: nothing used
                        outcome.usage = _NOTHING_USED
                    if isinstance(exc, UpstreamError):
                        _tell(exc, ctx, replica.id, reveal_upstream)
                    raise
            finally:
                self._balancer.release(replica)


def _tell(exc: UpstreamError, ctx: RequestContext, replica: str, reveal: bool) -> None:
    """Give an engine's failure its request id; log what the engine said, under that id."""
    request_id = ctx.request_id.decode("ascii")
    exc.extra["request_id"] = request_id
    if exc.detail is None:
        return
    if not isinstance(exc, UpstreamClientError):  # a refusal is the caller's business, not ours
        log.warning("request %s: deployment %s (replica %s) failed: %s: %s", request_id,
                    exc.extra.get("deployment"), replica, exc.code, exc.detail)
    if reveal:
        exc.extra["upstream"] = exc.detail


async def _stream(upstream: UpstreamResponse, ctx: RequestContext, receive: Receive,
                  send: Send, tap: UsageTap | None, outcome: Outcome | None,
                  scrubber: SSEErrorScrubber, reveal: bool) -> None:
    await start_stream(send, ctx, upstream.status, upstream.content_type)
    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))

    def client_left(task: asyncio.Future[None]) -> None:
        if not task.cancelled():
            upstream.close()

    watcher.add_done_callback(client_left)
    try:
        while True:
            try:
                chunk = await upstream.next_chunk()
            except UpstreamError as exc:
                if watcher.done():
                    return  # the client left; the upstream was closed on purpose
                _tell(exc, ctx, upstream.replica, reveal)
                await send({"type": "http.response.body", "body": sse_error_event(exc),
                            "more_body": True})
                break
            if not chunk:
                chunk = scrubber.flush()
                if tap is not None:
                    chunk = (tap.feed(chunk) if chunk else b"") + tap.flush()
                if chunk:
                    with suppress(OSError):
                        await send({"type": "http.response.body", "body": chunk,
                                    "more_body": True})
                break
            chunk = scrubber.feed(chunk)
            if not chunk:
                continue
            if tap is not None:
                chunk = tap.feed(chunk)
                if not chunk:
                    continue
            try:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except OSError:
                upstream.close()
                return
        with suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
        upstream.release()
        if tap is not None and outcome is not None:
            outcome.usage = tap.usage
            outcome.streamed_events = tap.estimated_completion_tokens()


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
