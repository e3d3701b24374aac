"""Endpoint handlers: each runs the pipeline stages for its route, in order.

Inference (``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``):

1. size      – a declared Content-Length over the limit is refused before anything else
   (it costs nothing and reads nothing).
2. authenticate – Bearer key → ``ApiKey`` from the snapshot, from headers only, so
   strangers never get their bodies read or parsed; the key needs the inference scope.
3. parse     – the body, bounded while it is read; only model/stream/token caps checked.
4. authorize – the model (name or alias) must exist *and be granted* to the key's team
   (a model the caller may not use is reported exactly like one that does not exist),
   and support this endpoint.
5. admit     – limits and budgets reserved in one atomic ledger step, then a slot on the
   deployment (waiting in its fair queue when it is at capacity) — ``admission``.
6. route + forward – ``Forwarder``: replica choice, bytes out, bytes back.
7. settle    – whatever way the request ended: the slot goes back and the reservations
   become what was used (or are released when no engine saw the request).

Guardrails slot in around 5–6 as they arrive.
"""

from __future__ import annotations

import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import orjson

from inferenceops.admission.fair_queue import Priority
from inferenceops.admission.ledger import LedgerUnavailable
from inferenceops.admission.quota import quota_document
from inferenceops.errors import (
    AuthenticationFailed,
    InvalidParameter,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from inferenceops.gateway.auth import authenticate, require_scope
from inferenceops.gateway.http import (
    Receive,
    RequestContext,
    Send,
    check_declared_size,
    read_body,
    respond,
)
from inferenceops.gateway.proxy import Outcome, sees_upstream_detail
from inferenceops.pipeline.request import parse_inference
from inferenceops.platform import Endpoint
from inferenceops.platform.identity import PLATFORM_ADMIN, SCOPE_ADMIN, SCOPE_INFERENCE

if TYPE_CHECKING:
    from inferenceops.gateway.state import GatewayState

PIPELINE_STAGES = ("size", "authenticate", "parse", "authorize", "admit", "route+forward", "settle")
_READ_EVERYTHING = (PLATFORM_ADMIN, "auditor")
_PRIORITIES = {b"interactive": Priority.INTERACTIVE, b"background": Priority.BACKGROUND,
               b"batch": Priority.BACKGROUND}


async def inference(state: GatewayState, endpoint: Endpoint, ctx: RequestContext,
                    receive: Receive, send: Send) -> None:
    check_declared_size(ctx, state.max_body_bytes)
    snapshot = state.snapshot  # one consistent view for the whole request
    key = authenticate(snapshot.identity, state.hasher, ctx.authorization, time.time())
    require_scope(key, SCOPE_INFERENCE)
    state.key_uses.note(key.id)
    body = await read_body(receive, ctx, state.max_body_bytes)
    request = parse_inference(body, endpoint, state.max_tokens_limit)
    model = snapshot.visible_model(key, request.model)
    if model is None:
        raise ModelNotFound(f"The model '{request.model}' does not exist or you do not have "
                            "access to it.", param="model")
    if endpoint not in model.endpoints:
        raise InvalidRequest(f"The model '{request.model}' does not support /v1/{endpoint.value}.",
                             param="model", code="unsupported_endpoint")
    admission = state.admission
    ticket = None
    if admission is not None:
        priority = _priority(ctx.priority)
        if key.background_only:
            if priority is Priority.INTERACTIVE and ctx.priority is not None:
                raise PermissionDenied(f"This API key ({key.prefix}…) may only send background "
                                       "requests.")
            priority = Priority.BACKGROUND
        ticket = await admission.admit(snapshot, key, model, len(body), request.max_tokens,
                                       priority, ctx)
    reveal = sees_upstream_detail(key)
    if ticket is None or admission is None:  # a ticket is only ever issued by admission
        await state.forwarder.forward(model.deployment, endpoint, request, ctx, receive, send,
                                      reveal_upstream=reveal)
        return
    outcome = Outcome()
    try:
        await state.forwarder.forward(model.deployment, endpoint, request, ctx, receive, send,
                                      outcome, track_usage=ticket.plan.needs_usage,
                                      reveal_upstream=reveal)
    finally:
        await admission.finish(ticket, reached_engine=outcome.reached_engine, usage=outcome.usage,
                               streamed_events=outcome.streamed_events)


def _priority(header: bytes | None) -> Priority:
    if header is None:
        return Priority.INTERACTIVE
    priority = _PRIORITIES.get(header.strip().lower())
    if priority is None:
        raise InvalidParameter("The x-inferenceops-priority header must be 'interactive' or "
                               "'background'.", param="x-inferenceops-priority")
    return priority


async def list_models(state: GatewayState, ctx: RequestContext, send: Send) -> None:
    snapshot = state.snapshot
    key = authenticate(snapshot.identity, state.hasher, ctx.authorization, time.time())
    state.key_uses.note(key.id)
    await respond(send, ctx, 200, snapshot.models_json(key))


async def get_model(state: GatewayState, model_id: str, ctx: RequestContext, send: Send) -> None:
    snapshot = state.snapshot
    key = authenticate(snapshot.identity, state.hasher, ctx.authorization, time.time())
    card = (snapshot.catalog.model_card_json(model_id)
            if snapshot.visible_model(key, model_id) else None)
    if card is None:
        raise ModelNotFound(f"The model '{model_id}' does not exist or you do not have access "
                            "to it.", param="model")
    await respond(send, ctx, 200, card)


async def quota(state: GatewayState, ctx: RequestContext, send: Send) -> None:
    """The caller's own limits, use and budgets (``GET /v1/quota``)."""
    snapshot = state.snapshot
    key = authenticate(snapshot.identity, state.hasher, ctx.authorization, time.time())
    if state.admission is None:
        body: dict[str, Any] = {"object": "quota", "key": {"id": key.id, "prefix": key.prefix},
                "team_id": key.team_id, "limits": [], "budgets": []}
    else:
        try:
            body = await quota_document(state.admission.ledger, snapshot, key)
        except LedgerUnavailable:
            raise Unavailable("Quota information is unavailable right now; try again shortly.",
                              code="admission_unavailable") from None
    await respond(send, ctx, 200, orjson.dumps(body))


async def metrics(state: GatewayState, ctx: RequestContext, send: Send, *,
                  from_loopback: bool) -> None:
    """Prometheus text exposition of this process's counters.

    Its labels name deployments, which a team must not learn of: served to this
    machine (a sidecar or node scraper) and to platform keys (no team) with the
    admin scope whose owner is a platform admin or auditor; anyone else gets the
    unknown-URL 404.
    """
    if not from_loopback:
        key = None
        if ctx.authorization is not None:
            with suppress(AuthenticationFailed):
                key = authenticate(state.snapshot.identity, state.hasher, ctx.authorization,
                                   time.time())
        if key is None or SCOPE_ADMIN not in key.scopes or \
                key.principal.platform_role not in _READ_EVERYTHING:
            raise NotFound("Unknown request URL: GET /metrics.", code="unknown_url")
    text = "" if state.admission is None else state.admission.render_metrics()
    await respond(send, ctx, 200, text.encode(), content_type=b"text/plain; version=0.0.4")


async def healthz(ctx: RequestContext, send: Send) -> None:
    await respond(send, ctx, 200, b'{"status":"ok"}')


async def readyz(state: GatewayState, ctx: RequestContext, send: Send) -> None:
    status, detail = (200, "ready") if state.ready else (503, "starting or draining")
    await respond(send, ctx, status, orjson.dumps({"status": detail}))
