"""The *route + forward* stage: pick a replica, send the bytes, pass the answer to the sink.

The replica is chosen by the deployment's routing strategy (``routing.Router``)
from the request's ``RouteFacts``. A refused connection (the request provably
never reached the engine) is retried on another replica before the first
byte; nothing is retried once an engine has the request. Non-streaming
answers are read whole and handed over in one piece. Streaming answers go
through the stream filter chain (``pipeline.filters``) chunk by chunk as they
arrive, never buffered beyond what a filter holds; a failure after the stream
started cannot change the status (already 200), so it is told as a final SSE
``error`` event. A caller that leaves mid-stream closes the upstream
connection, which frees the engine's slot.

What the engine did goes to ``facts.outcome`` (it survives exceptions):
whether the request reached an engine, which replica, the usage it reported,
how many content events a cut-off stream sent. An answer that is not one (an
error, a redirect, a body that is not JSON or too large) reached the engine
and used nothing: settle charges nothing for it.

What a caller learns of an engine's failure: every upstream error carries the
request id (``error.request_id``); what the engine said (``UpstreamError.detail``,
already redacted of secrets) is logged under that id, and shown as
``error.upstream`` only to callers that may see the platform's internals
(``sees_upstream_detail``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress

import orjson

from inferenceops.engines.openai_compat import OpenAICompatClient, UpstreamResponse
from inferenceops.engines.redaction import SSEErrorScrubber
from inferenceops.error_shape import sse_error_event
from inferenceops.errors import InferenceOpsError, UpstreamClientError, UpstreamError
from inferenceops.metering.usage import Usage, UsageTap, parse_usage, request_stream_usage
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.filters import EndStream, FilterChain, StreamFilter
from inferenceops.pipeline.request import InferenceRequest
from inferenceops.pipeline.sink import ClientGone, ResponseSink
from inferenceops.platform import ApiKey, Deployment, Endpoint
from inferenceops.platform.identity import PLATFORM_ADMIN, SCOPE_ADMIN
from inferenceops.routing import RouteFacts, Router

log = logging.getLogger("inferenceops.gateway.upstream")

NOTHING_USED = Usage(0, 0)
#: Platform roles that see what an engine said when it failed (as on /metrics: both read
#: everything of the platform; a team's own admins do not see its engines' internals).
_SEE_INTERNALS = (PLATFORM_ADMIN, "auditor")
#: Builds the extra filters of one stream (after redaction, before usage), e.g. guardrails.
FilterFactory = Callable[[RequestFacts], list[StreamFilter]]


def sees_upstream_detail(key: ApiKey) -> bool:
    """Whether ``key``'s caller is shown what an engine said when it failed (``error.upstream``).

    Tracebacks, paths and host names belong to the platform team: only a platform
    key (no team) with the admin scope whose owner reads the whole platform.
    """
    return key.team_id is None and SCOPE_ADMIN in key.scopes \
        and key.principal.platform_role in _SEE_INTERNALS


class Forwarder:
    """Sends a parsed request to its deployment and its answer to the sink."""

    __slots__ = ("_client", "_router", "_filters")

    def __init__(self, client: OpenAICompatClient, router: Router,
                 filters: FilterFactory | None = None) -> None:
        self._client = client
        self._router = router
        self._filters = filters

    @property
    def router(self) -> Router:
        return self._router

    async def forward(self, facts: RequestFacts, deployment: Deployment, endpoint: Endpoint,
                      request: InferenceRequest, route: RouteFacts, sink: ResponseSink) -> None:
        body = request.body
        doc = request.doc
        tap = None
        had_options = "stream_options" in doc
        if request.stream:
            tap = UsageTap(hide_usage_chunk=not request_stream_usage(doc))
        if request.model != deployment.served_model:
            doc["model"] = deployment.served_model
            body = orjson.dumps(doc)
        elif tap is not None and tap.hides:
            body = asking_for_usage(body) if not had_options else orjson.dumps(doc)
        outcome = facts.outcome
        outcome.deployment = deployment.name
        reveal = facts.key is not None and sees_upstream_detail(facts.key)
        client = self._client
        strategy = self._router.strategy(deployment)
        tried: list[str] = []
        while True:  # another replica only when the last one provably never got the request
            replica = strategy.pick(deployment, route, tried)
            strategy.acquire(replica)
            outcome.replica = replica.id
            started = time.perf_counter()
            try:
                try:
                    if request.stream:
                        upstream = await client.open_stream(deployment, replica, endpoint.value, body)
                    else:
                        answer = await client.complete(deployment, replica, endpoint.value, body)
                finally:
                    facts.upstream_s += time.perf_counter() - started
                outcome.reached_engine = True
                if request.stream:
                    outcome.status = upstream.status
                    outcome.streamed_events = 0
                    assert tap is not None
                    await self._stream(facts, upstream, sink, tap, reveal)
                else:
                    outcome.status = answer.status
                    outcome.usage = (NOTHING_USED if answer.status != 200 else
                                     parse_usage(answer.doc.get("usage")))
                    await sink.complete(facts, answer.status, answer.content_type, answer.body)
                    outcome.first_byte_s = time.perf_counter() - facts.started
                return
            except InferenceOpsError as exc:
                tried.append(replica.id)
                if not (exc.retryable and len(tried) < len(deployment.replicas)):
                    if not exc.retryable and not outcome.reached_engine:
                        outcome.reached_engine = True  # it got there and failed: nothing used
                        outcome.usage = NOTHING_USED
                    if isinstance(exc, UpstreamError):
                        tell(exc, facts, replica.id, reveal)
                    raise
            finally:
                strategy.release(replica)

    def _chain(self, facts: RequestFacts, tap: UsageTap) -> FilterChain:
        """Redaction of in-band errors first, then any extra filters, then usage extraction."""
        extra = self._filters(facts) if self._filters is not None else []
        return FilterChain([SSEErrorScrubber(self._client.redactor), *extra, tap])

    async def _stream(self, facts: RequestFacts, upstream: UpstreamResponse, sink: ResponseSink,
                      tap: UsageTap, reveal: bool) -> None:
        chain = self._chain(facts, tap)
        outcome = facts.outcome
        await sink.start(facts, upstream.status, upstream.content_type)
        outcome.first_byte_s = time.perf_counter() - facts.started
        gone = sink.gone()
        if gone is not None:

            def caller_left(future: object) -> None:
                if gone is not None and not gone.cancelled():
                    upstream.close()

            gone.add_done_callback(caller_left)
        try:
            while True:
                try:
                    chunk = await upstream.next_chunk()
                except UpstreamError as exc:
                    if gone is not None and gone.done():
                        outcome.caller_left = True  # the upstream was closed on purpose
                        return
                    tell(exc, facts, upstream.replica, reveal)
                    with suppress(ClientGone):
                        await sink.write(sse_error_event(exc))
                    break
                ended = not chunk
                try:
                    out = chain.flush() if ended else chain.feed(chunk)
                except EndStream as end:
                    upstream.close()
                    with suppress(ClientGone):
                        await sink.write(sse_error_event(end.error))
                    break
                if out:
                    try:
                        await sink.write(out)
                    except ClientGone:
                        outcome.caller_left = True
                        upstream.close()
                        return
                if ended:
                    break
            await sink.end()
        finally:
            if gone is not None:
                gone.cancel()
            upstream.release()
            outcome.usage = tap.usage
            outcome.streamed_events = tap.estimated_completion_tokens()


_ASK_FOR_USAGE = b'{"stream_options":{"include_usage":true},'


def asking_for_usage(body: bytes) -> bytes:
    """``body`` — a JSON object with a ``model`` and no ``stream_options`` — asking for usage.

    The member is put first and the client's bytes follow untouched: no re-encoding of a
    prompt that may be long (bytes in, bytes out), and the same document as
    ``request_stream_usage`` makes of it.
    """
    return _ASK_FOR_USAGE + body[body.index(b"{") + 1:]


def tell(exc: UpstreamError, facts: RequestFacts, replica: str, reveal: bool) -> None:
    """Give an engine's failure its request id; log what the engine said, under that id."""
    request_id = facts.request_id.decode("ascii")
    exc.extra["request_id"] = request_id
    if exc.detail is None:
        return
    if not isinstance(exc, UpstreamClientError):  # a refusal is the caller's business, not ours
        log.warning("request %s: deployment %s (replica %s) failed: %s: %s", request_id,
                    exc.extra.get("deployment"), replica, exc.code, exc.detail)
    if reveal:
        exc.extra["upstream"] = exc.detail
