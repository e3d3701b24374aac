"""The *guard* stage and the output side of guardrails: where ``guardrails`` meets the pipeline.

The stage runs between *authorize* (the key, its team and the model are known) and *admit* (so
a refused request reserves nothing): the policies attached to the platform, the key's team,
the model and the key are combined (``Guardrails.effective``, cached per snapshot) and applied
to the prompt — a block is 400 ``content_policy_violation``, a redaction rewrites the body the
engine gets, a flag is noted on the request. What the request is then answered with passes the
same policies' output rules: a streamed answer through ``StreamRedactor`` (a filter of the
chain, so usage is still extracted after it), a whole answer here before it is sent.
Interactive requests and batch lines go through the same code. The stage also notes the team's
body retention (``platform.retention``): a team that stores bodies gets its stream captured as
it goes out and its bodies queued by *settle*; a zero-retention team's engine errors are
logged without their detail. Nothing is logged of the text; ``facts.guardrail_findings`` keeps
``(entity, action)`` pairs, which metering counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from inferenceops.errors import PolicyViolation
from inferenceops.guardrails.enforce import check_answer, check_input
from inferenceops.guardrails.stream import StreamRedactor
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.filters import EndStream, StreamFilter
from inferenceops.pipeline.request import INPUT_FIELD
from inferenceops.pipeline.sink import ResponseSink
from inferenceops.platform import Snapshot
from inferenceops.platform.guardrails import OUTPUT
from inferenceops.retention.capture import StreamCapture

if TYPE_CHECKING:
    from inferenceops.engines.openai_compat import UpstreamAnswer
    from inferenceops.pipeline.kernel import Pipeline


async def guard(p: Pipeline, snapshot: Snapshot, facts: RequestFacts,
                sink: ResponseSink) -> None:
    """Note the team's body retention, then apply the input rules of the policies that apply
    to this request (see the module doc)."""
    policy = snapshot.policy
    key, model, request, endpoint = facts.key, facts.model, facts.request, facts.endpoint
    assert key is not None and model is not None and request is not None and endpoint is not None
    if policy.retention and key.team_id is not None:
        retention = facts.retention = policy.retention.get(key.team_id)
        if retention is not None and retention.stores and request.stream:
            facts.capture = StreamCapture(p.retained_body_max_bytes)
    guardrails = policy.guardrails
    if guardrails.empty:
        return
    effective = guardrails.effective(key.team_id, model.name, key.id)
    if effective is None or effective.empty:
        return
    facts.guardrails = effective
    from inferenceops.pipeline.stages import prompt_tokens  # the stages import this module

    try:
        outcome = check_input(effective, request.doc, INPUT_FIELD[endpoint], request.model,
                              lambda: prompt_tokens(p, facts))
    except PolicyViolation as refused:
        facts.note_guardrail(refused.extra.get("guardrail", "custom"), "block")
        raise
    for entity, action in outcome.found:
        facts.note_guardrail(entity, action)
    if outcome.changed:
        request.body = orjson.dumps(request.doc)


class _Blocking:
    """A ``StreamRedactor`` whose block ends the stream with an error event (``EndStream``)."""

    __slots__ = ("_redactor", "_facts")

    def __init__(self, redactor: StreamRedactor, facts: RequestFacts) -> None:
        self._redactor = redactor
        self._facts = facts

    def feed(self, chunk: bytes) -> bytes:
        try:
            return self._redactor.feed(chunk)
        except PolicyViolation as blocked:
            self._ended(blocked)
            raise EndStream(blocked) from None

    def flush(self) -> bytes:
        try:
            out = self._redactor.flush()
        except PolicyViolation as blocked:
            self._ended(blocked)
            raise EndStream(blocked) from None
        for entity, count in self._redactor.found.items():
            for _ in range(count):
                self._facts.note_guardrail(entity, "redact")
        return out

    def _ended(self, blocked: PolicyViolation) -> None:
        self._facts.note_guardrail(blocked.extra.get("guardrail", "custom"), "block")


def output_filters(facts: RequestFacts) -> list[StreamFilter]:
    """The stream filters of this request's output rules (none when it has none)."""
    effective = facts.guardrails
    if effective is None:
        return []
    redact = effective.entities(OUTPUT, "redact")
    block = effective.entities(OUTPUT, "block")
    if not redact and not block:
        return []
    return [_Blocking(StreamRedactor(redact, block=block), facts)]


def answer_body(facts: RequestFacts, answer: UpstreamAnswer) -> bytes:
    """The bytes to send for a whole answer: as the engine wrote them, or with the output
    rules applied (raises ``PolicyViolation`` for a block)."""
    effective = facts.guardrails
    if effective is None or answer.status != 200 or not effective.entity_actions.get(OUTPUT) \
            and not any(OUTPUT in pattern.on for pattern in effective.patterns):
        return answer.body
    try:
        outcome = check_answer(effective, answer.doc)
    except PolicyViolation as blocked:
        facts.note_guardrail(blocked.extra.get("guardrail", "custom"), "block")
        raise
    for entity, action in outcome.found:
        facts.note_guardrail(entity, action)
    return orjson.dumps(answer.doc) if outcome.changed else answer.body
