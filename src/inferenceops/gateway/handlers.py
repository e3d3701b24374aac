"""Endpoint handlers: the HTTP edge of the data plane.

Inference (``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``)
is one call of the transport-neutral pipeline (``pipeline.kernel``, where the
stages and their order are written down): this module only adapts ASGI to it
— the body is asked of the server at once (``early_read``: a server that hands it
over from its own threads does so while the key is checked) and taken when the
*parse* stage needs it, after authentication: a stranger's body is never parsed.
The answer goes out through an ``AsgiSink``. The other routes are small enough to
answer here.
"""

from __future__ import annotations

import time
from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from inferenceops.admission.ledger import LedgerUnavailable
from inferenceops.admission.quota import quota_document
from inferenceops.errors import AuthenticationFailed, ModelNotFound, NotFound, Unavailable
from inferenceops.gateway.http import AsgiSink, Receive, Send, declared_length, early_read, read_body, respond
from inferenceops.metering.own_usage import own_usage_document, own_usage_query, parse_query
from inferenceops.outbox.metrics import render_outbox_metrics
from inferenceops.pipeline.auth import authenticate
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.platform import Endpoint
from inferenceops.platform.identity import PLATFORM_ADMIN, SCOPE_ADMIN

if TYPE_CHECKING:
    from inferenceops.gateway.state import GatewayState

_READ_EVERYTHING = (PLATFORM_ADMIN, "auditor")


async def inference(state: GatewayState, endpoint: Endpoint, facts: RequestFacts,
                    receive: Receive, send: Send, sink: AsgiSink) -> None:
    limit = state.pipeline.max_body_bytes
    declared = declared_length(facts)
    first = early_read(receive) if declared is not None and 0 < declared <= limit else None

    async def body() -> bytes:
        return await read_body(receive, limit, declared, first)

    facts.endpoint = endpoint
    facts.body_source = body
    await state.pipeline.run(state.snapshot, facts, sink)


async def list_models(state: GatewayState, facts: RequestFacts, send: Send) -> None:
    snapshot = state.snapshot
    key = authenticate(snapshot.identity, state.hasher, facts.authorization, time.time())
    state.outbox.note_key_use(key.id)
    await respond(send, facts, 200, snapshot.models_json(key))


async def get_model(state: GatewayState, model_id: str, facts: RequestFacts, send: Send) -> None:
    snapshot = state.snapshot
    key = authenticate(snapshot.identity, state.hasher, facts.authorization, time.time())
    card = (snapshot.catalog.model_card_json(model_id)
            if snapshot.visible(key, model_id) else None)
    if card is None:
        raise ModelNotFound(f"The model '{model_id}' does not exist or you do not have access "
                            "to it.", param="model")
    await respond(send, facts, 200, card)


async def quota(state: GatewayState, facts: RequestFacts, send: Send) -> None:
    """The caller's own limits, use and budgets (``GET /v1/quota``)."""
    snapshot = state.snapshot
    key = authenticate(snapshot.identity, state.hasher, facts.authorization, time.time())
    if state.admission is None:
        body: dict[str, Any] = {"object": "quota", "key": {"id": key.id, "prefix": key.prefix},
                                "team_id": key.team_id, "limits": [], "budgets": []}
    else:
        try:
            body = await quota_document(state.admission.ledger, snapshot, key)
        except LedgerUnavailable:
            raise Unavailable("Quota information is unavailable right now; try again shortly.",
                              code="admission_unavailable") from None
    await respond(send, facts, 200, orjson.dumps(body))


async def usage(state: GatewayState, facts: RequestFacts, query_string: bytes, send: Send) -> None:
    """The caller's team's usage by day and model — a key without a team: its own
    (``GET /v1/usage``, ``metering.own_usage``). Reads the store's rollups through
    ``state.usage``: never on an inference request's path."""
    snapshot = state.snapshot
    key = authenticate(snapshot.identity, state.hasher, facts.authorization, time.time())
    query = own_usage_query(key, parse_query(query_string), datetime.now(UTC))
    if state.usage is None:
        raise Unavailable("Usage reports are not served by this process", code="usage_unavailable")
    report = await state.usage.report(query)
    await respond(send, facts, 200,
                  orjson.dumps(own_usage_document(report, key, snapshot.policy.currency)))


async def metrics(state: GatewayState, facts: RequestFacts, send: Send, *,
                  from_loopback: bool) -> None:
    """Prometheus text exposition of this process's counters.

    Its labels name deployments, which a team must not learn of: served to this
    machine (a sidecar or node scraper) and to platform keys (no team) with the
    admin scope whose owner is a platform admin or auditor; anyone else gets the
    unknown-URL 404.
    """
    if not from_loopback:
        key = None
        if facts.authorization is not None:
            with suppress(AuthenticationFailed):
                key = authenticate(state.snapshot.identity, state.hasher, facts.authorization,
                                   time.time())
        if key is None or SCOPE_ADMIN not in key.scopes or \
                key.principal.platform_role not in _READ_EVERYTHING:
            raise NotFound("Unknown request URL: GET /metrics.", code="unknown_url")
    text = "" if state.admission is None else state.admission.render_metrics()
    text += render_outbox_metrics(state.outbox)
    text += state.pipeline.usage_meter.render()
    text += state.pipeline.guardrail_meter.render()
    text += state.pipeline.forwarder.render_metrics(state.snapshot.catalog.deployments.values())
    text += "".join(source() for source in state.metric_sources)
    await respond(send, facts, 200, text.encode(), content_type=b"text/plain; version=0.0.4")


async def healthz(facts: RequestFacts, send: Send) -> None:
    await respond(send, facts, 200, b'{"status":"ok"}')


async def readyz(state: GatewayState, facts: RequestFacts, send: Send) -> None:
    status, detail = (200, "ready") if state.ready else (503, "starting or draining")
    await respond(send, facts, status, orjson.dumps({"status": detail}))
