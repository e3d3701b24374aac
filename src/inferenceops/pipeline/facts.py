"""What one request is and what the stages decided about it: transport-neutral, one per request.

The HTTP edge builds ``RequestFacts`` from an ASGI scope (``from_headers``); a
batch line or a test builds one directly (``for_call``). The stages read and
fill it in order — the key after *authenticate*, the parsed request after
*parse*, the model after *authorize*, the admission decision after *admit*,
what the engine did in ``outcome`` during *forward* — and *settle* reads it
all at the end. Nothing here knows about ASGI, sockets or the store.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inferenceops.metering.usage import Usage
from inferenceops.platform import Adapter, ApiKey, Deployment, Endpoint, Model
from inferenceops.platform.priority import Priority
from inferenceops.values import fresh_id

if TYPE_CHECKING:
    from inferenceops.admission.control import Admission
    from inferenceops.errors import InferenceOpsError
    from inferenceops.outbox import UsageRecord
    from inferenceops.pipeline.request import InferenceRequest
    from inferenceops.platform.guardrails import Effective
    from inferenceops.platform.retention import Retention
    from inferenceops.retention.capture import StreamCapture

_MAX_REQUEST_ID = 128
BodySource = Callable[[], Awaitable[bytes]]


@dataclass(slots=True)
class Outcome:
    """How forwarding ended, as far as settlement and the usage record need to know."""

    reached_engine: bool = False
    usage: Usage | None = None  # as reported by the engine; Usage(0, 0) on an answer that used nothing
    streamed_events: int | None = None  # content events sent, for a stream that started
    status: int | None = None  # the engine's status, once it answered
    deployment: str | None = None
    replica: str | None = None
    first_byte_s: float | None = None  # seconds from the request's start to the first byte out
    caller_left: bool = False  # the caller went away before the answer was whole


class RequestFacts:
    """One request's facts and the stages' decisions (see the module doc)."""

    __slots__ = ("request_id", "endpoint", "authorization", "content_length", "priority_header",
                 "session_header",
                 "body_source", "started", "upstream_s", "key", "request", "model", "priority",
                 "admission", "outcome", "response_headers", "deferred_headers", "error",
                 "body_size",
                 "prompt_tokens", "batch", "guardrails", "guardrail_findings", "usage_record",
                 "retention", "answer", "capture", "deployment", "adapter")

    def __init__(self, endpoint: Endpoint | None, request_id: bytes, *,
                 authorization: bytes | None = None, content_length: bytes | None = None,
                 priority_header: bytes | None = None, body_source: BodySource | None = None,
                 batch: bool = False) -> None:
        self.started = time.perf_counter()
        self.upstream_s = 0.0  # waiting on engines (and for capacity): not gateway overhead
        self.endpoint = endpoint
        self.request_id = request_id
        self.authorization = authorization
        self.content_length = content_length
        self.priority_header = priority_header
        #: ``x-inferenceops-session``: the conversation a request belongs to, for
        #: ``session_affinity`` routing (else the body's ``user`` field stands in).
        self.session_header: bytes | None = None
        self.body_source = body_source
        self.key: ApiKey | None = None
        self.request: InferenceRequest | None = None
        self.model: Model | None = None
        #: The deployment the model's split sent it to (*authorize*): admission's gate, and
        #: the first the request is forwarded to (its fallbacks after it).
        self.deployment: Deployment | None = None
        #: The LoRA adapter the request names (*authorize*; ``model`` is then its base model):
        #: routed to a replica holding it (``routing.adapters``) and metered to it.
        self.adapter: Adapter | None = None
        self.priority = Priority.INTERACTIVE
        self.admission: Admission | None = None
        self.outcome = Outcome()
        #: Headers a stage wants on the response, whatever it is (``answer_headers``).
        self.response_headers: list[tuple[bytes, bytes]] | None = None
        #: Headers a stage decided on but left to be written when the response starts (e.g.
        #: admission's x-ratelimit-*): formatting them is no reason to make the engine wait.
        self.deferred_headers: list[Callable[[], Iterable[tuple[bytes, bytes]]]] | None = None
        self.error: InferenceOpsError | None = None  # how the request failed, for settle
        self.body_size = 0
        self.prompt_tokens: int | None = None  # counted once, when a stage needs it (``tokens``)
        #: A line of a batch: admitted in the background class, priced with the batch
        #: discount, recorded as class ``batch``. Only in-process callers set it (``for_call``).
        self.batch = batch
        #: A batch line's usage record, handed to its caller by *settle* instead of the outbox:
        #: the executor stores it in the transaction that records the line, so a line run again
        #: after a crash is billed once (``batch.executor``). None for every other request.
        self.usage_record: UsageRecord | None = None
        self.guardrails: Effective | None = None  # the policies that apply (the guard stage)
        #: What guardrails found and did: entity or rule → action → count (for metering).
        self.guardrail_findings: dict[tuple[str, str], int] | None = None
        #: The key's team's body retention when it is not the default (the guard stage):
        #: ``store`` keeps this request's bodies (``answer`` / ``capture``), ``zero`` keeps
        #: even an engine's error detail out of the log. None: nothing kept, as by default.
        self.retention: Retention | None = None
        self.answer: bytes | None = None  # a whole answer as sent, kept only when retention stores
        self.capture: StreamCapture | None = None  # a stream as sent, likewise

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[bytes, bytes]],
                     endpoint: Endpoint | None = None) -> RequestFacts:
        """From raw (lower-case) header pairs, as an HTTP server hands them over."""
        request_id = authorization = content_length = priority = session = None
        for name, value in headers:
            if name == b"authorization":
                authorization = value
            elif name == b"x-request-id":
                request_id = value
            elif name == b"content-length":
                content_length = value
            elif name == b"x-inferenceops-priority":
                priority = value
            elif name == b"x-inferenceops-session":
                session = value
        facts = cls(endpoint, _request_id(request_id), authorization=authorization,
                    content_length=content_length, priority_header=priority)
        facts.session_header = session
        return facts

    @classmethod
    def for_call(cls, endpoint: Endpoint, body: bytes, *, api_key: str,
                 priority: str | None = None, request_id: str | None = None,
                 batch: bool = False) -> RequestFacts:
        """An in-process request (a batch line, a test): the body is already here.

        ``batch``: a line of a batch (see ``RequestFacts.batch``).
        """

        async def source() -> bytes:
            return body

        return cls(endpoint, _request_id(None if request_id is None else request_id.encode()),
                   authorization=b"Bearer " + api_key.encode(),
                   content_length=b"%d" % len(body),
                   priority_header=None if priority is None else priority.encode(),
                   body_source=source, batch=batch)

    @classmethod
    def for_batch_line(cls, endpoint: Endpoint, body: bytes, key: ApiKey,
                       request_id: str) -> RequestFacts:
        """A line of a batch, run as the key that created the batch (``batch.executor``).

        The executor holds no secret, only the key's id; it finds the key in the current
        snapshot (a revoked key is gone from it) and hands it over here, so the
        *authenticate* stage checks it is still live instead of hashing a header.
        """
        facts = cls.for_call(endpoint, body, api_key="", request_id=request_id, batch=True)
        facts.authorization = None
        facts.key = key
        return facts

    def overhead_ms(self) -> bytes:
        elapsed = time.perf_counter() - self.started - self.upstream_s
        return b"%.3f" % (elapsed * 1000.0)

    def note_guardrail(self, entity: str, action: str) -> None:
        found = self.guardrail_findings
        if found is None:
            found = self.guardrail_findings = {}
        found[entity, action] = found.get((entity, action), 0) + 1

    def add_response_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.response_headers = [*(self.response_headers or ()), *headers]

    def defer_response_headers(self, source: Callable[[], Iterable[tuple[bytes, bytes]]]) -> None:
        """Headers for the response, written by ``source`` when they are first asked for."""
        self.deferred_headers = [*(self.deferred_headers or ()), source]

    def answer_headers(self) -> list[tuple[bytes, bytes]]:
        """Every header stages want on the response, the deferred ones written now (once)."""
        deferred = self.deferred_headers
        if deferred:
            self.deferred_headers = None
            for source in deferred:
                self.add_response_headers(source())
        return self.response_headers or []


def _request_id(given: bytes | None) -> bytes:
    """The caller's id when it is short printable ASCII, else a fresh one."""
    if given and len(given) <= _MAX_REQUEST_ID and given.isascii() and all(33 <= c < 127 for c in given):
        return given
    return fresh_id(12).encode()
