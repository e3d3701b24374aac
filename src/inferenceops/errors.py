"""The one error hierarchy of InferenceOps.

Every failure a client can see is one of these classes; each knows its HTTP
status and its OpenAI ``type`` / ``code``. They are raised anywhere (engines,
routing, gateway) and turned into OpenAI error JSON in exactly one place:
``inferenceops.error_shape``. Nothing here does I/O.

    InferenceOpsError                      500 server_error / internal_error
    ├── InvalidRequest                     400 invalid_request_error
    │   ├── InvalidJSON                    400 invalid_request_error / invalid_json
    │   ├── InvalidParameter               400 invalid_request_error / invalid_value (and others)
    │   │   └── InvalidFile                400 invalid_request_error / invalid_file (names the line)
    │   ├── PayloadTooLarge                413 invalid_request_error / payload_too_large
    │   └── PolicyViolation                400 invalid_request_error / content_policy_violation
    │                                          (a guardrail policy blocks the request or answer)
    ├── AuthenticationFailed               401 authentication_error / invalid_api_key
    ├── PermissionDenied                   403 permission_error / permission_denied
    ├── NotFound                           404 invalid_request_error / not_found
    │   └── ModelNotFound                  404 invalid_request_error / model_not_found
    ├── MethodNotAllowed                   405 invalid_request_error / method_not_allowed
    ├── RateLimited                        429 rate_limit_error / rate_limit_exceeded (Retry-After)
    │   ├── BudgetExceeded                 429 insufficient_quota / budget_exceeded
    │   └── QueueFull                      429 rate_limit_error / queue_full | queue_timeout
    ├── Unavailable                        503 service_unavailable / not_ready
    │   ├── NoReplicaAvailable             503 service_unavailable / no_replica_available
    │   │                                      (every replica down, open or drained; Retry-After)
    │   └── AdapterSlotsBusy               503 service_unavailable / adapter_slots_busy
    │                                          (every LoRA slot of the replica is in use; Retry-After)
    └── UpstreamError                      502 upstream_error  (base of every engine failure)
        ├── UpstreamUnavailable            502 upstream_error / upstream_unavailable (reset mid-way)
        │   └── UpstreamConnectFailed      502 upstream_error / upstream_unavailable (retryable)
        ├── UpstreamTimeout                504 timeout_error / upstream_timeout
        ├── UpstreamServerError            502 upstream_error / upstream_server_error (upstream 5xx)
        │   └── UpstreamOverloaded         502 same code; the engine said 503 (retried with backoff)
        ├── UpstreamInvalidResponse        502 upstream_error / upstream_invalid_response
        │   │                                  (a redirect, or a 2xx body that is not JSON)
        │   └── UpstreamResponseTooLarge   502 upstream_error / upstream_response_too_large
        └── UpstreamClientError            4xx passed through (upstream rejected the request)
            └── UpstreamRateLimited        429 passed through, always with Retry-After

What an engine said is never shown to tenants raw: ``UpstreamError.detail``
holds it, already redacted of secrets, for the log and for platform admins
(docs/errors.md); an ``UpstreamClientError``'s message and body are redacted
before they are built.
"""

from __future__ import annotations

from typing import Any


class InferenceOpsError(Exception):
    """Base of every error a client may see."""

    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"
    #: True when the request provably never reached an engine, so another replica may be tried.
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}


class InvalidRequest(InferenceOpsError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class PolicyViolation(InvalidRequest):
    """A guardrail policy blocks the request, or the answer (``guardrails``)."""

    code = "content_policy_violation"


class InvalidJSON(InvalidRequest):
    code = "invalid_json"


class InvalidParameter(InvalidRequest):
    code = "invalid_value"


class InvalidFile(InvalidParameter):
    """An uploaded file's content breaks a rule; ``extra["line"]`` names the line when one does."""

    code = "invalid_file"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class AuthenticationFailed(InferenceOpsError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(InferenceOpsError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(InferenceOpsError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(InferenceOpsError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RateLimited(InferenceOpsError):
    """A limit, budget or queue refused the request for now; ``Retry-After`` says when to retry."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExceeded(RateLimited):
    type = "insufficient_quota"
    code = "budget_exceeded"


class QueueFull(RateLimited):
    code = "queue_full"


class Unavailable(InferenceOpsError):
    status = 503
    type = "service_unavailable"
    code = "not_ready"


class NoReplicaAvailable(Unavailable):
    """No replica of the model's deployment may take a request now: each is down (its circuit
    breaker open, or it refused the connection just now) or drained. Carries ``Retry-After``."""

    code = "no_replica_available"


class AdapterSlotsBusy(Unavailable):
    """A LoRA adapter could not be loaded on the chosen replica: each of its ``max_loras`` slots
    holds an adapter with requests in flight (``routing.adapters``). Carries ``Retry-After``."""

    code = "adapter_slots_busy"


class UpstreamError(InferenceOpsError):
    """An engine failed us; ``deployment`` names which one (never its URL or credentials).

    ``detail`` is what happened upstream (its status and words, the replica, the
    transport's cause), redacted of secrets but possibly naming hosts, paths or
    carrying a traceback: it goes to the log and to platform admins, never to a
    tenant, so it is kept apart from ``extra`` (which every caller sees).
    """

    status = 502
    type = "upstream_error"
    code = "upstream_error"

    def __init__(self, message: str, *, detail: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.detail = detail


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"


class UpstreamConnectFailed(UpstreamUnavailable):
    retryable = True


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class UpstreamServerError(UpstreamError):
    code = "upstream_server_error"


class UpstreamOverloaded(UpstreamServerError):
    """The engine answered 503: it did not take the request (loading, or overloaded), so the
    forwarder may retry it with backoff. ``retry_after_s``: what its ``Retry-After`` said."""

    def __init__(self, message: str, *, retry_after_s: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class UpstreamInvalidResponse(UpstreamError):
    """The engine answered something that is not an answer: a redirect, or a body that is not JSON."""

    code = "upstream_invalid_response"


class UpstreamResponseTooLarge(UpstreamInvalidResponse):
    """A non-streamed answer past ``INFERENCEOPS_MAX_RESPONSE_BYTES``: cut, never read whole."""

    code = "upstream_response_too_large"


class AdapterLoadFailed(UpstreamError):
    """The engine refused, failed or did not finish in time to load a LoRA adapter
    (``POST /v1/load_lora_adapter``); the request was not sent (``routing.adapters``)."""

    code = "adapter_load_failed"


class UpstreamClientError(UpstreamError):
    """The upstream refused the request (4xx); its status and OpenAI body pass through, redacted."""

    type = "invalid_request_error"
    code = "upstream_rejected"

    def __init__(self, message: str, *, status: int, body: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, status=status, **kwargs)
        self.body = body


class UpstreamRateLimited(UpstreamClientError):
    """The engine or provider said 429: the client is told so, with a ``Retry-After``."""

    type = "rate_limit_error"
    code = "upstream_rate_limited"
