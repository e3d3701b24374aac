"""The *route + forward* stage: pick a replica, send the bytes, pass the answer to the sink.

The replica is chosen by the deployment's routing strategy (``routing.Router``)
from the request's ``RouteFacts``, among the replicas this process's health
(``routing.FleetHealth``) lets take work: drained replicas and open circuit
breakers are passed over; none left → 503 ``no_replica_available`` with
``Retry-After``, at once. Each attempt's outcome goes back to the health
(success, busy, or a failure of some kind). Retries follow ``routing.retry``
exactly: a request that provably never reached an engine (connect refused or
timed out) moves to another replica at once; an engine's 429 or 503 (it did
not take the request) is sent again after a backoff within the per-request
budget; nothing else is ever re-sent, because the engine may have started
work. What only the answer needs (its headers, a stream's filter chain) is
made while the engine works, once the request is sent (``meanwhile``).
Non-streaming answers are read whole and handed over in one piece.
Streaming answers go through the stream filter chain (``pipeline.filters``)
chunk by chunk as they arrive, never buffered beyond what a filter holds; a
failure after the stream started cannot change the status (already 200), so
it is told as a final SSE ``error`` event — a started stream is never
replayed. Each chunk is progress for hung-replica detection. A caller that
leaves mid-stream closes the upstream connection, which frees the engine's
slot.

What the engine did goes to ``facts.outcome`` (it survives exceptions):
whether the request reached an engine, which replica, the usage it reported,
how many content events a cut-off stream sent. An answer that is not one (an
error, a redirect, a body that is not JSON or too large) reached the engine
and used nothing: settle charges nothing for it.

A request for a LoRA adapter (``facts.adapter``) is kept to the replicas holding it
(``routing.AdapterAffinity``) and holds it from before it is sent until its answer ends
(``AdapterResidency.acquire``: loads it first when none holds it; 502 ``adapter_load_failed``
when that fails; a replica whose slots all serve requests is passed over, and when every
replica is, 503 ``adapter_slots_busy``). Its body names the adapter as the engine knows it
(the same name: no rewrite). An engine that answers 404 lost the adapter (it restarted, or
another gateway process unloaded it): the request did not start, so the adapter is loaded again
and the request sent once more — once.

What a caller and the log learn of an engine's failure: ``pipeline.upstream_failure``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import replace

import orjson

from inferenceops.engines.openai_compat import OpenAICompatClient, UpstreamResponse
from inferenceops.engines.redaction import SSEErrorScrubber
from inferenceops.error_shape import sse_error_event
from inferenceops.errors import (
    AdapterSlotsBusy,
    InferenceOpsError,
    NoReplicaAvailable,
    UpstreamClientError,
    UpstreamConnectFailed,
    UpstreamError,
)
from inferenceops.metering.usage import Usage, UsageTap, parse_usage, request_stream_usage
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.filters import EndStream, FilterChain, StreamFilter
from inferenceops.pipeline.guard import answer_body, output_filters
from inferenceops.pipeline.request import InferenceRequest
from inferenceops.pipeline.sink import ClientGone, ResponseSink
from inferenceops.pipeline.upstream_failure import sees_upstream_detail, tell
from inferenceops.platform import Deployment, Endpoint
from inferenceops.routing import RouteFacts, Router
from inferenceops.routing.adapters import AdapterAffinity, AdapterResidency, EngineLoader
from inferenceops.routing.health import FleetHealth, label_value
from inferenceops.routing.retry import BUSY, Retry, RetryPolicy, Verdict, judge

log = logging.getLogger("inferenceops.gateway.upstream")

NOTHING_USED = Usage(0, 0)
#: Builds the extra filters of one stream (after redaction, before usage), e.g. guardrails.
FilterFactory = Callable[[RequestFacts], list[StreamFilter]]


class Forwarder:
    """Sends a parsed request to its deployment and its answer to the sink."""

    __slots__ = ("_client", "_router", "_filters", "health", "retry", "_random", "retries",
                 "refused", "fallbacks", "adapters")

    def __init__(self, client: OpenAICompatClient, router: Router,
                 filters: FilterFactory | None = None, *, health: FleetHealth | None = None,
                 retry: RetryPolicy | None = None, rng: random.Random | None = None,
                 adapters: AdapterResidency | None = None) -> None:
        self._client = client
        #: Which LoRA adapters this process loaded where (``routing.adapters``).
        self.adapters = adapters if adapters is not None else AdapterResidency(EngineLoader(client))
        self._router = router
        self._filters = filters if filters is not None else output_filters
        self.health = health if health is not None else FleetHealth()
        self.retry = retry if retry is not None else RetryPolicy()
        self._random = rng or random.Random()
        self.retries: dict[tuple[str, str], int] = {}  # (deployment, why) → re-sends
        self.refused: dict[str, int] = {}  # deployment → 503s for want of a replica
        self.fallbacks: dict[tuple[str, str], int] = {}  # (model, deployment) → sent there

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
        adapter = facts.adapter
        engine_model = deployment.served_model if adapter is None else adapter.name
        rewrite = request.model != engine_model
        if rewrite:
            doc["model"] = engine_model
        if deployment.engine_priority:
            # The engine orders its queue by this (vLLM's priority scheduling): the gateway's
            # service class, never the caller's own value (which could jump everyone).
            wanted = int(facts.priority)
            given = doc.get("priority", 0)
            if type(given) is not int or given != wanted:
                doc["priority"] = wanted
                rewrite = True
        if rewrite:
            body = orjson.dumps(doc)
        elif tap is not None and tap.hides:
            body = asking_for_usage(body) if not had_options else orjson.dumps(doc)
        outcome = facts.outcome
        outcome.deployment = deployment.name
        reveal = facts.key is not None and sees_upstream_detail(facts.key)
        client = self._client
        health = self.health
        strategy = self._router.strategy(deployment)
        if adapter is not None:
            strategy = AdapterAffinity(strategy, self.adapters)
        idempotent = endpoint is Endpoint.EMBEDDINGS  # re-sending one changes nothing
        tried: set[str] = set()
        chain: list[FilterChain] = []  # built while the engine works (``meanwhile``)

        def meanwhile() -> None:
            """Scheduled as the request is sent: runs at the first wait for the engine, off the
            path from the engine's first bytes to the caller."""
            facts.answer_headers()
            if tap is not None and not chain:
                with suppress(Exception):  # built again on the path, where it raises for the caller
                    chain.append(self._chain(facts, tap))

        loop = asyncio.get_running_loop()
        backoffs = 0
        reloaded = False  # an adapter the engine lost is loaded again once per request
        slots_busy: AdapterSlotsBusy | None = None  # a replica had no slot: try the others
        last: InferenceOpsError | None = None
        while True:
            chosen = health.pick(strategy, deployment, route, tried)
            if chosen is None:
                if slots_busy is not None:
                    raise slots_busy
                raise self._none_left(facts, deployment, request.model, last, reveal)
            replica, trial = chosen
            strategy.acquire(replica, route)
            outcome.replica = replica.id
            judged = False
            holding = False
            started = time.perf_counter()
            try:
                if adapter is not None:
                    try:
                        await self.adapters.acquire(deployment, replica, adapter)
                    except AdapterSlotsBusy as busy:
                        slots_busy = busy
                        tried.add(replica.id)
                        judged = True  # the replica did nothing wrong
                        continue
                    except UpstreamError as exc:
                        tell(exc, facts, replica.id, reveal)
                        raise
                    finally:
                        facts.upstream_s += time.perf_counter() - started
                    holding = True
                    started = time.perf_counter()
                loop.call_soon(meanwhile)
                try:
                    if request.stream:
                        upstream = await client.open_stream(deployment, replica, endpoint.value,
                                                            body)
                    else:
                        answer = await client.complete(deployment, replica, endpoint.value, body,
                                                       idempotent=idempotent)
                except InferenceOpsError as exc:
                    if adapter is not None and not reloaded and _lost_adapter(exc):
                        reloaded = True  # the engine does not have it: load it, send again
                        judged = True
                        self.adapters.forget(replica.id, adapter.name)
                        continue
                    verdict = judge(exc)
                    self._note(replica.id, verdict)
                    judged = True
                    tried.add(replica.id)
                    last = exc
                    wait = self._retry_wait(verdict, backoffs, deployment, tried, facts)
                    if wait is None:
                        if verdict.retry is Retry.ELSEWHERE:
                            continue  # the next pick finds another replica, or none: 503
                        self._fail(exc, facts, replica.id, reveal)
                        raise
                    if verdict.retry is Retry.BACKOFF:
                        backoffs += 1
                    why = "connect" if verdict.retry is Retry.ELSEWHERE else \
                        ("busy" if verdict.health == BUSY else "overloaded")
                    key = (deployment.name, why)
                    self.retries[key] = self.retries.get(key, 0) + 1
                    if wait > 0:
                        await asyncio.sleep(wait)
                    continue
                finally:
                    facts.upstream_s += time.perf_counter() - started
                health.succeeded(replica.id)
                judged = True
                outcome.reached_engine = True
                if request.stream:
                    outcome.status = upstream.status
                    outcome.streamed_events = 0
                    assert tap is not None
                    await self._stream(facts, upstream, sink,
                                       chain[0] if chain else self._chain(facts, tap), tap, reveal)
                else:
                    outcome.status = answer.status
                    outcome.usage = (NOTHING_USED if answer.status != 200 else
                                     parse_usage(answer.doc.get("usage")))
                    body = answer.body if facts.guardrails is None else answer_body(facts, answer)
                    if facts.retention is not None:
                        facts.answer = body  # kept by settle when the team stores bodies
                    await sink.complete(facts, answer.status, answer.content_type, body)
                    outcome.first_byte_s = time.perf_counter() - facts.started
                return
            finally:
                if holding:
                    assert adapter is not None
                    self.adapters.release(replica.id, adapter.name)
                strategy.release(replica, route)
                if trial and not judged:
                    health.abandoned(replica.id)

    def _note(self, replica_id: str, verdict: Verdict) -> None:
        """Tell the replica's health what the failed attempt says of it."""
        if verdict.health is None:
            self.health.succeeded(replica_id)
        elif verdict.health == BUSY:
            self.health.busy(replica_id)
        else:
            self.health.failed(replica_id, verdict.health)

    def _retry_wait(self, verdict: Verdict, backoffs: int, deployment: Deployment,
                    tried: set[str], facts: RequestFacts) -> float | None:
        """Seconds to wait before the next attempt, or None: no next attempt (``routing.retry``)."""
        if verdict.retry is Retry.NO:
            return None
        if verdict.retry is Retry.ELSEWHERE:
            return 0.0 if len(tried) < len(deployment.replicas) else None
        others = any(r.id not in tried and r.id not in deployment.drained
                     for r in deployment.replicas)
        # Another replica may take it after a short backoff; the one that refused asked for its
        # own wait (Retry-After), which only matters when it is the one tried again.
        wait = self.retry.wait(replace(verdict, wait_s=None) if others else verdict, backoffs,
                               self._random)
        if wait is None:
            return None
        timeouts = deployment.timeouts
        spent = time.perf_counter() - facts.started
        if spent + wait >= min(timeouts.first_byte_s, timeouts.total_s):
            return None
        if not others:
            tried.clear()  # every replica refused it for now: any of them again, after the wait
        return wait

    def _fail(self, exc: InferenceOpsError, facts: RequestFacts, replica: str,
              reveal: bool) -> None:
        """The last attempt failed and is not retried: it reached an engine and used nothing."""
        outcome = facts.outcome
        if not exc.retryable and not outcome.reached_engine:
            outcome.reached_engine = True
            outcome.usage = NOTHING_USED
        if isinstance(exc, UpstreamError):
            tell(exc, facts, replica, reveal)

    def _none_left(self, facts: RequestFacts, deployment: Deployment, model: str,
                   last: InferenceOpsError | None, reveal: bool) -> InferenceOpsError:
        """No replica may take the request: 503 with Retry-After — or, when an engine already
        refused it (429/503) and no other may try, that engine's answer."""
        if last is not None and not isinstance(last, UpstreamConnectFailed):
            self._fail(last, facts, facts.outcome.replica or "?", reveal)
            return last
        name = deployment.name
        self.refused[name] = self.refused.get(name, 0) + 1
        wait = self.health.retry_after(deployment)
        if deployment.drained and deployment.drained >= {r.id for r in deployment.replicas}:
            why = "every replica is drained"
        elif last is not None:
            why = "every replica refused the connection or is marked down"
        else:
            why = "every replica is marked down after repeated failures"
        error = NoReplicaAvailable(
            f"No replica of model {model!r} can take requests right now ({why}); retry in "
            f"{wait}s.", headers={"Retry-After": str(wait)},
            extra={"deployment": name, "request_id": facts.request_id.decode("ascii")})
        if last is not None:
            log.warning("request %s: no replica of deployment %s left to try: %s",
                        facts.request_id.decode("ascii"), name, why)
        return error

    def note_fallback(self, model: str, deployment: str) -> None:
        """A request of ``model`` goes on to a fallback, ``deployment`` (for ``/metrics``)."""
        key = (model, deployment)
        self.fallbacks[key] = self.fallbacks.get(key, 0) + 1

    def render_metrics(self, deployments: Iterable[Deployment]) -> str:
        """Replica health (``FleetHealth.render``), re-sends, 503s for want of a replica and
        fallbacks taken."""
        deployments = list(deployments)
        lines = [self.health.render(deployments),
                 "# HELP inferenceops_upstream_retries_total Requests sent again: connect (to "
                 "another replica), busy (after a 429), overloaded (after a 503).",
                 "# TYPE inferenceops_upstream_retries_total counter"]
        lines += [f'inferenceops_upstream_retries_total{{deployment="{label_value(d)}",reason="{why}"}} '
                  f"{n}" for (d, why), n in sorted(self.retries.items())]
        lines += ["# HELP inferenceops_no_replica_total Requests answered 503 because no replica "
                  "could take them.", "# TYPE inferenceops_no_replica_total counter"]
        lines += [f'inferenceops_no_replica_total{{deployment="{label_value(d)}"}} {n}'
                  for d, n in sorted(self.refused.items())]
        lines += ["# HELP inferenceops_fallbacks_total Requests a model's deployment could not "
                  "take, sent on to a fallback deployment.",
                  "# TYPE inferenceops_fallbacks_total counter"]
        lines += [f'inferenceops_fallbacks_total{{model="{label_value(m)}",'
                  f'deployment="{label_value(d)}"}} {n}' for (m, d), n in sorted(self.fallbacks.items())]
        return "\n".join(lines) + "\n" + self.adapters.render_metrics()

    def _chain(self, facts: RequestFacts, tap: UsageTap) -> FilterChain:
        """Redaction of in-band errors first, then any extra filters (guardrails; the capture of
        a team that keeps bodies), then usage extraction."""
        extra = self._filters(facts) if self._filters is not None else []
        if facts.capture is not None:
            extra = [*extra, facts.capture]  # keeps the stream as the caller gets it
        return FilterChain([SSEErrorScrubber(self._client.redactor), *extra, tap])

    async def _stream(self, facts: RequestFacts, upstream: UpstreamResponse, sink: ResponseSink,
                      chain: FilterChain, tap: UsageTap, reveal: bool) -> None:
        outcome = facts.outcome
        health = self.health
        replica = upstream.replica
        health.stream_started(replica)
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
                    self._note(replica, judge(exc))  # broke off, or stalled: never replayed
                    tell(exc, facts, upstream.replica, reveal)
                    with suppress(ClientGone):
                        await sink.write(sse_error_event(exc))
                    break
                ended = not chunk
                health.progress(replica)
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
            health.stream_ended(replica)
            upstream.release()
            outcome.usage = tap.usage
            outcome.streamed_events = tap.estimated_completion_tokens()


def _lost_adapter(exc: InferenceOpsError) -> bool:
    """An engine's 404 to a request for an adapter: it does not hold the adapter (any more).
    Refused before any work started, so sending the request again is safe."""
    return isinstance(exc, UpstreamClientError) and exc.status == 404


_ASK_FOR_USAGE = b'{"stream_options":{"include_usage":true},'


def asking_for_usage(body: bytes) -> bytes:
    """``body`` — a JSON object with a ``model`` and no ``stream_options`` — asking for usage.

    The member is put first and the client's bytes follow untouched: no re-encoding of a
    prompt that may be long (bytes in, bytes out), and the same document as
    ``request_stream_usage`` makes of it.
    """
    return _ASK_FOR_USAGE + body[body.index(b"{") + 1:]
