"""What the outbox carries: plain, immutable records; the writer decides how each is stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inferenceops.values import immutable


@immutable
class UsageRecord:
    """One request, as it ended: who, what, how much, how it went.

    ``tokens_reported``: the engine said how many tokens were used (else they are
    the gateway's count: ``metering.tokens``). ``cost_nanos`` is in the platform currency's
    nano-units (0 for an unpriced model). Times are epoch seconds and
    milliseconds since the request arrived.
    """

    request_id: str
    at: float
    key_id: str
    team_id: str | None
    principal_id: str
    principal_kind: str
    model: str | None
    deployment: str | None
    replica: str | None
    endpoint: str
    priority: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    tokens_reported: bool
    cost_nanos: int
    status: int
    error_code: str | None
    latency_ms: float
    first_byte_ms: float | None
    cached_tokens: int = 0  # of prompt_tokens, from the engine's prefix cache (as it reported)
    adapter: str | None = None  # the LoRA adapter that served it (with adapters, in the fleet)
    #: What guardrail policies found and did, never the text: "pii@2 card:block email:redact×2".
    guardrails: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An audit-log entry raised on the data plane (e.g. a soft budget exceeded)."""

    actor: str
    action: str
    target_type: str
    target_id: str
    after: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BodyRecord:
    """A request and its answer, for a team that keeps bodies (``platform.retention``).

    The bytes are as they passed (the request as the engine got it, the answer as the caller
    got it; a stream's raw SSE), each cut at the configured size (``truncated``). The writer
    redacts them before anything is stored (``retention.redact``): nothing on the request
    path scans them.
    """

    request_id: str
    at: float
    team_id: str
    key_id: str
    model: str | None
    endpoint: str
    stream: bool
    status: int
    days: int
    request: bytes
    response: bytes | None
    truncated: bool


Record = UsageRecord | AuditRecord | BodyRecord
