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

_KINDS = ((CheckKind.REQUESTS, b"requests"), (CheckKind.TOKENS, b"tokens"))


def format_reset(seconds: float) -> str:
    if seconds < 1.0:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60.0:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(int(math.ceil(seconds)), 60)
    return f"{minutes}m{rest}s"


def rate_limit_headers(checks: Sequence[Check],
                       states: Sequence[CounterState]) -> list[tuple[bytes, bytes]] | None:
    headers: list[tuple[bytes, bytes]] = []
    for kind, name in _KINDS:
        tightest: CounterState | None = None
        for check, state in zip(checks, states, strict=True):
            if check.kind is kind and (tightest is None or state.remaining < tightest.remaining):
                tightest = state
        if tightest is not None:
            headers += [(b"x-ratelimit-limit-" + name, b"%d" % tightest.limit),
                        (b"x-ratelimit-remaining-" + name, b"%d" % tightest.remaining),
                        (b"x-ratelimit-reset-" + name, format_reset(tightest.reset_s).encode())]
    return headers or None


def retry_after_header(seconds: float | None) -> dict[str, str]:
    if seconds is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(seconds))),
            "retry-after-ms": str(max(1, math.ceil(seconds * 1000)))}
