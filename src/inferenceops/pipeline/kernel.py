"""The pipeline kernel: the declared order of the stages, and the one loop that runs them.

    size           a declared body over the limit is refused before anything is read
    authenticate   Bearer key → ``ApiKey`` from the snapshot, from the header only (no body read
                   for strangers); it needs the inference scope
    parse          the body, bounded while read; only the fields the gateway decides on
    authorize      the model must exist and be granted to the key (else exactly "does not
                   exist"), serve this endpoint; the request's service class
    guard          the guardrail policies attached to the platform, team, model and key:
                   block (400 content_policy_violation), redact the prompt, or flag
    admit          limits and budgets reserved in one atomic step, then a deployment slot
    route+forward  the deployment's strategy picks a replica; bytes out, the answer to the sink
    settle         ALWAYS, however it ended: admission settled or released, cost, one usage record

``Pipeline.run`` runs ``STAGES`` in this order until one raises, then every
stage marked ``always`` — so settle sees every request that started. The same
pipeline serves an HTTP request (``gateway.handlers`` adapts ASGI to facts and
a sink), a batch line and a test (``RequestFacts.for_call`` + ``CollectingSink``).
Guardrails are the *guard* stage and, on the way out, a stream filter and a check
of whole answers (``pipeline.guard``); engine-aware routing as a routing strategy; metering reads settle's
records from the outbox.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple

from inferenceops.admission.control import AdmissionControl
from inferenceops.errors import InferenceOpsError
from inferenceops.guardrails.metrics import GuardrailMeter
from inferenceops.metering.metrics import UsageMeter
from inferenceops.metering.tokens import TokenCounter
from inferenceops.outbox import Outbox
from inferenceops.pipeline import stages
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.forward import Forwarder
from inferenceops.pipeline.guard import guard
from inferenceops.pipeline.settle import settle
from inferenceops.pipeline.sink import ResponseSink
from inferenceops.platform import KeyHasher, Snapshot
from inferenceops.platform.retention import RETAINED_BODY_MAX_BYTES

StageFn = Callable[["Pipeline", Snapshot, RequestFacts, ResponseSink], Awaitable[None]]


class Stage(NamedTuple):
    name: str
    run: StageFn
    always: bool = False  # runs however the stages before it ended


STAGES: tuple[Stage, ...] = (
    Stage("size", stages.check_size),
    Stage("authenticate", stages.authenticate_stage),
    Stage("parse", stages.parse),
    Stage("authorize", stages.authorize),
    Stage("guard", guard),
    Stage("admit", stages.admit),
    Stage("route+forward", stages.route_and_forward),
    Stage("settle", settle, always=True),
)


class Pipeline:
    """Everything the stages share for the life of a process; requests bring their facts."""

    __slots__ = ("hasher", "forwarder", "outbox", "admission", "max_body_bytes",
                 "max_tokens_limit", "stages", "tokens", "usage_meter", "guardrail_meter",
                 "retained_body_max_bytes")

    def __init__(self, *, hasher: KeyHasher, forwarder: Forwarder, outbox: Outbox,
                 admission: AdmissionControl | None, max_body_bytes: int, max_tokens_limit: int,
                 stage_list: tuple[Stage, ...] = STAGES,
                 tokens: TokenCounter | None = None,
                 retained_body_max_bytes: int = RETAINED_BODY_MAX_BYTES) -> None:
        self.tokens = tokens if tokens is not None else TokenCounter()
        self.usage_meter = UsageMeter()  # tokens and cost per team and model, for /metrics
        self.guardrail_meter = GuardrailMeter()  # what guardrails found and did, for /metrics
        self.hasher = hasher
        self.forwarder = forwarder
        self.outbox = outbox
        self.admission = admission
        self.max_body_bytes = max_body_bytes
        self.max_tokens_limit = max_tokens_limit
        self.stages = stage_list
        #: Each side of a kept body is cut at this size (``platform.retention``).
        self.retained_body_max_bytes = retained_body_max_bytes

    async def run(self, snapshot: Snapshot, facts: RequestFacts, sink: ResponseSink) -> None:
        """Run the stages over one request; raises what refused or failed it, after settling."""
        try:
            for stage in self.stages:
                if not stage.always:
                    await stage.run(self, snapshot, facts, sink)
        except InferenceOpsError as exc:
            facts.error = exc
            raise
        except Exception:
            facts.error = InferenceOpsError("The server had an error while processing your request.")
            raise
        finally:
            for stage in self.stages:
                if stage.always:
                    await stage.run(self, snapshot, facts, sink)
