"""The stages of an inference request, each one small decision over (snapshot, facts).

Each stage reads what the ones before it decided (``RequestFacts``) and adds
its own; none touches a transport, except *route + forward*, which writes to
the ``ResponseSink`` it is given. The order is ``kernel.STAGES``.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from inferenceops.errors import (
    AuthenticationFailed,
    InferenceOpsError,
    InvalidParameter,
    InvalidRequest,
    ModelNotFound,
    NoReplicaAvailable,
    PayloadTooLarge,
    PermissionDenied,
    UpstreamConnectFailed,
    UpstreamOverloaded,
    UpstreamRateLimited,
)
from inferenceops.metering.tokens import fallback_tokens
from inferenceops.metering.tokens import prompt_tokens as count_prompt
from inferenceops.pipeline.auth import authenticate, require_scope
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.request import INPUT_FIELD, parse_inference
from inferenceops.pipeline.sink import ResponseSink
from inferenceops.platform import Snapshot
from inferenceops.platform.identity import SCOPE_INFERENCE
from inferenceops.platform.priority import Priority
from inferenceops.routing import RouteFacts

if TYPE_CHECKING:
    from inferenceops.pipeline.kernel import Pipeline

_PRIORITIES = {b"interactive": Priority.INTERACTIVE, b"background": Priority.BACKGROUND,
               b"batch": Priority.BACKGROUND}


# ---- the stages -------------------------------------------------------------------------------

async def check_size(p: Pipeline, snapshot: Snapshot, facts: RequestFacts, sink: ResponseSink) -> None:
    """A declared length over the limit is refused before anything is read or checked."""
    if facts.content_length is not None:
        try:
            declared = int(facts.content_length)
        except ValueError:
            raise InvalidRequest("The Content-Length header is not a number.") from None
        if declared > p.max_body_bytes:
            raise PayloadTooLarge(f"The request body is {declared} bytes; the limit is "
                                  f"{p.max_body_bytes}.")


async def authenticate_stage(p: Pipeline, snapshot: Snapshot, facts: RequestFacts,
                             sink: ResponseSink) -> None:
    """From the header only, so strangers never get their bodies parsed (the HTTP edge may
    have asked the server for the first part of it already: ``gateway.http.early_read``).

    A batch line arrives with its key already found by id (``RequestFacts.for_batch_line``;
    the batch scope admitted it when the batch was created): only its expiry is checked.
    """
    if facts.batch and facts.key is not None and facts.authorization is None:
        key = facts.key
        if key.expired(time.time()):
            raise AuthenticationFailed("The API key that created this batch has expired.")
    else:
        key = authenticate(snapshot.identity, p.hasher, facts.authorization, time.time())
        require_scope(key, SCOPE_INFERENCE)
    facts.key = key
    p.outbox.note_key_use(key.id)


async def parse(p: Pipeline, snapshot: Snapshot, facts: RequestFacts, sink: ResponseSink) -> None:
    """The body, bounded while it is read; only the fields the gateway decides on are checked."""
    assert facts.body_source is not None and facts.endpoint is not None
    body = await facts.body_source()
    facts.body_size = len(body)
    facts.request = parse_inference(body, facts.endpoint, p.max_tokens_limit)


async def authorize(p: Pipeline, snapshot: Snapshot, facts: RequestFacts,
                    sink: ResponseSink) -> None:
    """The model must exist *and be granted* to the key, and serve this endpoint.

    A model the caller may not use is reported exactly like one that does not exist. A
    LoRA adapter's name (granted like a model's) stands for its base model, on the model's
    primary deployment: a canary deployment may not serve the adapter.
    Then the request's service class: a background-only key's requests are background
    work, and such a key may not ask for interactive service.
    """
    key, request, endpoint = facts.key, facts.request, facts.endpoint
    assert key is not None and request is not None and endpoint is not None
    visible = snapshot.visible(key, request.model)
    if visible is None:
        raise ModelNotFound(f"The model '{request.model}' does not exist or you do not have "
                            "access to it.", param="model")
    model, adapter = visible
    if endpoint not in model.endpoints:
        raise InvalidRequest(f"The model '{request.model}' does not support /v1/{endpoint.value}.",
                             param="model", code="unsupported_endpoint")
    facts.model = model
    facts.adapter = adapter
    facts.deployment = model.deployment if model.split is None or adapter is not None else \
        model.split.pick(session_of(facts), random.random)
    header = facts.priority_header
    priority = Priority.INTERACTIVE
    if header is not None:
        found = _PRIORITIES.get(header.strip().lower())
        if found is None:
            raise InvalidParameter("The x-inferenceops-priority header must be 'interactive' or "
                                   "'background'.", param="x-inferenceops-priority")
        priority = found
    if facts.batch:
        priority = Priority.BACKGROUND  # batch work never takes interactive capacity
    elif key.background_only:
        if priority is Priority.INTERACTIVE and header is not None:
            raise PermissionDenied(f"This API key ({key.prefix}…) may only send background "
                                   "requests.")
        priority = Priority.BACKGROUND
    facts.priority = priority


async def admit(p: Pipeline, snapshot: Snapshot, facts: RequestFacts, sink: ResponseSink) -> None:
    """Limits and budgets reserved in one atomic step, then a slot on the deployment."""
    if p.admission is None:
        return
    key, model, request = facts.key, facts.model, facts.request
    assert key is not None and model is not None and request is not None
    admission = await p.admission.admit(snapshot, key, model, facts.body_size,
                                        request.max_tokens, facts.priority,
                                        prompt_tokens=lambda: prompt_tokens(p, facts),
                                        deployment=facts.deployment)
    if admission is not None:
        facts.admission = admission
        facts.upstream_s += admission.queued_s  # waiting for engine capacity is not overhead
        facts.defer_response_headers(lambda: admission.headers)


def prompt_tokens(p: Pipeline, facts: RequestFacts) -> int:
    """The request's prompt in tokens, counted once (``metering.tokens``; the byte estimate
    while the tokenizer loads)."""
    if facts.prompt_tokens is None:
        request, endpoint = facts.request, facts.endpoint
        assert request is not None and endpoint is not None
        facts.prompt_tokens = count_prompt(request.doc, INPUT_FIELD[endpoint], p.tokens,
                                           facts.body_size)
    return facts.prompt_tokens


async def route_and_forward(p: Pipeline, snapshot: Snapshot, facts: RequestFacts,
                            sink: ResponseSink) -> None:
    """The deployment's routing strategy picks a replica; the answer goes to ``sink``.

    When the deployment could not take the request — and provably no engine started on it
    (``falls_back``) — the model's fallbacks are tried in order; a fallback to another model
    only if the key may use that model, which then prices and names the request. A request
    for an adapter has no fallback: another deployment or model would not have the adapter.
    """
    model, request, endpoint = facts.model, facts.request, facts.endpoint
    assert model is not None and request is not None and endpoint is not None
    deployment = facts.deployment or model.deployment
    route = route_facts(facts)
    try:
        await p.forwarder.forward(facts, deployment, endpoint, request, route, sink)
        return
    except InferenceOpsError as refused:
        if not model.fallbacks or facts.adapter is not None or not falls_back(refused, sink):
            raise
        failed = refused
    key = facts.key
    assert key is not None
    for fallback in model.fallbacks:
        other = fallback.model
        if other is not None and (not snapshot.identity.may_use(key, other.name)
                                  or endpoint not in other.endpoints):
            continue
        target = fallback.target(route.session, random.random)
        p.forwarder.note_fallback(model.name, target.name)
        if other is not None:
            facts.model = other
        try:
            await p.forwarder.forward(facts, target, endpoint, request, route, sink)
            return
        except InferenceOpsError as refused:
            if not falls_back(refused, sink):
                raise
            failed = refused
    raise failed


def falls_back(error: InferenceOpsError, sink: ResponseSink) -> bool:
    """Whether a failed forward may go to the next fallback: nothing was sent to the caller,
    and no engine started on the request — no replica could take it (all down, refused the
    connection, drained), or an engine refused it (429, 503) past the retry budget."""
    return not sink.started and isinstance(error, _NEVER_STARTED)


_NEVER_STARTED = (NoReplicaAvailable, UpstreamConnectFailed, UpstreamRateLimited,
                  UpstreamOverloaded)


def session_of(facts: RequestFacts) -> str | None:
    """The conversation a request belongs to: the ``x-inferenceops-session`` header, else the
    body's ``user``."""
    header = facts.session_header
    if header:
        return header.decode("latin-1")
    request = facts.request
    user = request.doc.get("user") if request is not None else None
    return user if isinstance(user, str) else None


def route_facts(facts: RequestFacts) -> RouteFacts:
    """What a routing strategy may know of the request: its class, its size in tokens, its
    session (``session_of``), its body."""
    request = facts.request
    assert request is not None
    session = session_of(facts)
    return RouteFacts(priority=facts.priority,
                      estimated_tokens=(facts.prompt_tokens or fallback_tokens(facts.body_size))
                      + (request.max_tokens or 0),
                      adapter=facts.adapter.name if facts.adapter is not None else None,
                      session=session, doc=request.doc)
