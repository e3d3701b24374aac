"""OpenAI-style rate-limit headers, so existing clients and SDKs back off correctly.

``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` describe the most
constraining per-minute counter of each kind that applied to the request
(the one with the least remaining); ``reset`` is the time until that counter
is back to its initial state, written like OpenAI does (``1s``, ``6m0s``,
``250ms``). ``Retry-After`` (whole seconds, at least 1) and ``retry-after-ms``
go on refusals; the official SDKs honour both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from inferenceops.admission.ledger import Check, CheckKind, CounterState

_REQUESTS, _TOKENS = CheckKind.REQUESTS, CheckKind.TOKENS
_LIMIT_REQUESTS, _REMAINING_REQUESTS, _RESET_REQUESTS = (
    b"x-ratelimit-limit-requests", b"x-ratelimit-remaining-requests", b"x-ratelimit-reset-requests")
_LIMIT_TOKENS, _REMAINING_TOKENS, _RESET_TOKENS = (
    b"x-ratelimit-limit-tokens", b"x-ratelimit-remaining-tokens", b"x-ratelimit-reset-tokens")


def format_reset(seconds: float) -> str:
    if seconds < 1.0:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60.0:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(int(math.ceil(seconds)), 60)
    return f"{minutes}m{rest}s"


def rate_limit_headers(checks: Sequence[Check],
                       states: Sequence[CounterState]) -> list[tuple[bytes, bytes]] | None:
    """The headers of the tightest REQUESTS and of the tightest TOKENS counter (the first of
    equally tight ones), or None when neither kind applied.

    Every admitted request asks: one pass over the checks, ``remaining`` worked out inline.
    """
    requests: CounterState | None = None
    tokens: CounterState | None = None
    requests_left = tokens_left = 0
    for check, state in zip(checks, states, strict=True):
        kind = check.kind
        if kind is _REQUESTS or kind is _TOKENS:
            left = state.limit - state.used  # CounterState.remaining
            if left < 0:
                left = 0
            if kind is _REQUESTS:
                if requests is None or left < requests_left:
                    requests, requests_left = state, left
            elif tokens is None or left < tokens_left:
                tokens, tokens_left = state, left
    headers: list[tuple[bytes, bytes]] = []
    if requests is not None:
        headers += [(_LIMIT_REQUESTS, b"%d" % requests.limit),
                    (_REMAINING_REQUESTS, b"%d" % requests_left),
                    (_RESET_REQUESTS, format_reset(requests.reset_s).encode())]
    if tokens is not None:
        headers += [(_LIMIT_TOKENS, b"%d" % tokens.limit), (_REMAINING_TOKENS, b"%d" % tokens_left),
                    (_RESET_TOKENS, format_reset(tokens.reset_s).encode())]
    return headers or None


def retry_after_header(seconds: float | None) -> dict[str, str]:
    if seconds is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(seconds))),
            "retry-after-ms": str(max(1, math.ceil(seconds * 1000)))}
