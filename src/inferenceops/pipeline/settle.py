"""The *settle* stage: however a request ended, account for it exactly once.

Runs after every request that got past the start, answered or not — failed at
any stage, cut off by the engine, abandoned by its caller. It

1. works out what was used: the engine's reported usage (with the prompt tokens its
   prefix cache served), or, when it reported none (a stream cut short), the prompt
   counted with the platform's tokenizer (``metering.tokens``) plus one token per
   content event that went out (engines send one per token; never more than the
   output cap) — marked *estimated*; nothing, for a request that never reached an
   engine or got no real answer;
2. prices it at the price in force when it started, for the deployment that served it
   (the snapshot's policy; cached prompt tokens at the cached-input price; 0 when unpriced);
3. gives admission's slot back and settles its reservations to those tokens
   and that cost, or releases them when no engine saw the request;
4. queues one usage record on the outbox (for a request whose key was known) — a
   batch line's goes back to its executor instead (``RequestFacts.usage_record``), to be
   stored with the line's result — and counts its tokens and cost per team and model
   for ``/metrics``;
5. for a team that keeps bodies (``platform.retention``), queues the request and its
   answer as they passed (``BodyRecord``; the outbox writer redacts and stores them).

No I/O of its own: admission's ledger call is the only await.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from inferenceops.errors import InferenceOpsError
from inferenceops.metering.tokens import fallback_tokens
from inferenceops.metering.usage import Usage
from inferenceops.outbox import UsageRecord
from inferenceops.outbox.records import BodyRecord
from inferenceops.pipeline import stages
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.sink import ResponseSink
from inferenceops.platform import Snapshot
from inferenceops.platform.priority import Priority

if TYPE_CHECKING:
    from inferenceops.pipeline.kernel import Pipeline

NOTHING = Usage(0, 0)
_CLASS = {Priority.INTERACTIVE: "interactive", Priority.BACKGROUND: "background"}
BATCH_CLASS = "batch"  # the usage record's class of a batch line (admitted as background)


def used(p: Pipeline, facts: RequestFacts) -> tuple[Usage, bool]:
    """(tokens used, whether an engine reported them) — see the module doc."""
    outcome = facts.outcome
    if not outcome.reached_engine:
        return NOTHING, True
    if outcome.usage is not None:
        return outcome.usage, True
    admission = facts.admission
    request, model = facts.request, facts.model
    if admission is not None:
        cap = admission.ticket.plan.max_output
    else:
        cap = (request.max_tokens if request is not None and request.max_tokens else
               model.max_output_tokens if model is not None else 0)
    prompt = (stages.prompt_tokens(p, facts) if request is not None
              else fallback_tokens(facts.body_size))
    sent = outcome.streamed_events
    completion = cap if sent is None else min(max(0, sent), cap)
    return Usage(prompt, completion), False


async def settle(p: Pipeline, snapshot: Snapshot, facts: RequestFacts, sink: ResponseSink) -> None:
    usage, reported = used(p, facts)
    model = facts.model
    started_at = time.time() - (time.perf_counter() - facts.started)  # priced as of its start
    price = (snapshot.policy.price(model.name, started_at, facts.outcome.deployment)
             if model is not None else None)
    cost = (price.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens,
                       batch=facts.batch) if price is not None else 0)
    admission = facts.admission
    if admission is not None and p.admission is not None:
        facts.admission = None  # settled once, whatever happens next
        await p.admission.finish(admission.ticket, reached_engine=facts.outcome.reached_engine,
                                 tokens=usage.total, cost=cost)
    if facts.guardrail_findings and facts.guardrails is not None:
        p.guardrail_meter.add(",".join(facts.guardrails.policies), facts.guardrail_findings)
    key = facts.key
    if key is not None:
        record = _record(facts, usage, reported, cost, sink)
        if facts.batch:
            facts.usage_record = record  # stored with the line's result (``batch.executor``)
        else:
            p.outbox.put(record)
        if model is not None:
            p.usage_meter.add(key.team_id, model.name, usage, reported, cost)
        retention = facts.retention
        if retention is not None and retention.days is not None and facts.request is not None:
            p.outbox.put(_kept(p, facts, record, retention.days))


def _kept(p: Pipeline, facts: RequestFacts, record: UsageRecord, days: int) -> BodyRecord:
    """The request and its answer, as they passed, for a team that keeps bodies (each cut at
    the configured size; the writer redacts them)."""
    limit = p.retained_body_max_bytes
    request = facts.request
    assert request is not None and record.team_id is not None
    sent: bytes | None
    cut = False
    if facts.capture is not None:
        sent, cut = facts.capture.captured(), facts.capture.truncated
    else:
        sent = facts.answer
        if sent is not None and len(sent) > limit:
            sent, cut = sent[:limit], True
    body = request.body
    if len(body) > limit:
        body, cut = body[:limit], True
    return BodyRecord(request_id=record.request_id, at=record.at, team_id=record.team_id,
                      key_id=record.key_id, model=record.model, endpoint=record.endpoint,
                      stream=facts.capture is not None, status=record.status, days=days,
                      request=body, response=sent, truncated=cut)


def _record(facts: RequestFacts, usage: Usage, reported: bool, cost: int,
            sink: ResponseSink) -> UsageRecord:
    key, outcome, error, request = facts.key, facts.outcome, facts.error, facts.request
    assert key is not None and facts.endpoint is not None
    status, code = _status(facts, error, sink)
    now = time.perf_counter()
    return UsageRecord(
        request_id=facts.request_id.decode("ascii"), at=time.time(), key_id=key.id,
        team_id=key.team_id, principal_id=key.principal.id, principal_kind=key.principal.kind,
        model=facts.model.name if facts.model is not None else None,
        deployment=outcome.deployment, replica=outcome.replica, endpoint=facts.endpoint.value,
        priority=BATCH_CLASS if facts.batch else _CLASS[facts.priority],
        stream=request is not None and request.stream,
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        tokens_reported=reported, cost_nanos=cost, status=status, error_code=code,
        guardrails=None if not facts.guardrail_findings else _guardrails(facts),
        latency_ms=round((now - facts.started) * 1000.0, 3),
        first_byte_ms=None if outcome.first_byte_s is None else round(outcome.first_byte_s * 1000.0, 3),
        adapter=facts.adapter.name if facts.adapter is not None else None)


def _guardrails(facts: RequestFacts) -> str:
    """``"pii@2,small@1 card:block email:redact×2"``: the policies, then each finding's entity
    type and action (with a count past one), sorted — never the text."""
    found = facts.guardrail_findings or {}
    policies = ",".join(facts.guardrails.policies) if facts.guardrails is not None else "-"
    parts = [f"{entity}:{action}" + (f"×{n}" if n > 1 else "")
             for (entity, action), n in sorted(found.items())]
    return " ".join([policies, *parts])


def _status(facts: RequestFacts, error: InferenceOpsError | None,
            sink: ResponseSink) -> tuple[int, str | None]:
    """What the caller was told: the status sent (a stream's stays 200) and why it ended badly."""
    outcome = facts.outcome
    if sink.started:
        status = outcome.status or 200
    elif error is not None:
        status = error.status
    else:
        status = outcome.status or 499  # nothing was sent: the caller left first
    if error is not None:
        return status, error.code or error.type
    if outcome.caller_left or not sink.started:
        return status, "client_disconnected"
    return status, None
