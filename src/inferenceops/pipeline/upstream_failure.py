"""What a caller and the log learn of an engine's failure.

Every upstream error carries the request id (``error.request_id``); what the engine said
(``UpstreamError.detail``, already redacted of secrets) is logged under that id — without
the request's prompt, which engines quote in their errors — and shown as
``error.upstream`` only to callers that may see the platform's internals
(``sees_upstream_detail``).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from inferenceops.errors import UpstreamClientError, UpstreamError
from inferenceops.metering.tokens import prompt_texts
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.request import INPUT_FIELD
from inferenceops.platform import ApiKey
from inferenceops.platform.identity import PLATFORM_ADMIN, SCOPE_ADMIN

log = logging.getLogger("inferenceops.gateway.upstream")

#: Platform roles that see what an engine said when it failed (as on /metrics: both read
#: everything of the platform; a team's own admins do not see its engines' internals).
_SEE_INTERNALS = (PLATFORM_ADMIN, "auditor")


def sees_upstream_detail(key: ApiKey) -> bool:
    """Whether ``key``'s caller is shown what an engine said when it failed (``error.upstream``).

    Tracebacks, paths and host names belong to the platform team: only a platform
    key (no team) with the admin scope whose owner reads the whole platform.
    """
    return key.team_id is None and SCOPE_ADMIN in key.scopes \
        and key.principal.platform_role in _SEE_INTERNALS


def tell(exc: UpstreamError, facts: RequestFacts, replica: str, reveal: bool) -> None:
    """Give an engine's failure its request id; log what the engine said, under that id —
    without the request's prompt, which engines quote in their errors (bodies are never
    stored, logs included: ``without_prompt``), and not at all for a zero-retention team."""
    request_id = facts.request_id.decode("ascii")
    exc.extra["request_id"] = request_id
    if exc.detail is None:
        return
    if not isinstance(exc, UpstreamClientError):  # a refusal is the caller's business, not ours
        retention = facts.retention
        log.warning("request %s: deployment %s (replica %s) failed: %s: %s", request_id,
                    exc.extra.get("deployment"), replica, exc.code,
                    "(detail not logged: the team is zero-retention)"
                    if retention is not None and retention.zero else
                    without_prompt(exc.detail, facts))
    if reveal:
        exc.extra["upstream"] = exc.detail


#: Prompt pieces shorter than this are left in a logged error (a word such as "hi" would
#: blank out unrelated text, and tells nothing).
_MIN_SCRUBBED = 8


def without_prompt(detail: Any, facts: RequestFacts) -> Any:
    """``detail`` (an engine's error, as ``UpstreamError.detail`` holds it) with every piece of
    the request's prompt in its text — as sent, or JSON-escaped as an engine quoting the body
    writes it — replaced by ``[prompt]``.

    Only on an engine's failure, never per request. What an engine quotes cut short, or
    re-encoded otherwise, is not recognised: logs are shipped by the operator, so
    docs/security.md says to treat engine error logs as sensitive all the same.
    """
    request, endpoint = facts.request, facts.endpoint
    if request is None or endpoint is None:
        return detail
    forms: set[str] = set()
    for piece in prompt_texts(request.doc, INPUT_FIELD[endpoint]):
        if len(piece) >= _MIN_SCRUBBED:
            forms |= {piece, orjson.dumps(piece).decode()[1:-1]}
    return _replaced(detail, sorted(forms, key=len, reverse=True)) if forms else detail


def _replaced(value: Any, forms: list[str]) -> Any:
    if isinstance(value, str):
        for form in forms:
            value = value.replace(form, "[prompt]")
        return value
    if isinstance(value, dict):
        return {k: _replaced(v, forms) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replaced(v, forms) for v in value]
    return value
