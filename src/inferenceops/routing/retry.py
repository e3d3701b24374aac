"""When a failed attempt may be sent again, and what it says about the replica: pure rules.

The one rule underneath: **a request that may have reached an engine is never
sent again**, unless the engine said it did not take it. So (docs/health.md):

============================  ================  ==========================================
what happened                 replica's health  retried?
============================  ================  ==========================================
connect refused / timed out   failure           yes, at once, on another replica (each
(also: replica left catalog)                    replica once); all refused → 503
engine 429 (busy)             *not* a failure   yes, with backoff, within the retry budget,
                                                if its Retry-After is at most
                                                ``max_wait_s`` (else the 429 goes back)
engine 503 (not taken)        failure           yes, with backoff, within the budget
other engine 5xx              failure           no: the engine may have started work
first-byte timeout            failure           no
connection lost after the     failure           no (a stale keep-alive connection is
request was written                             detected *before* writing, and then
                                                reconnected: ``engines.http1``)
an answer that is not one     failure           no
engine 4xx (not 429)          success           no: the caller's request was refused
============================  ================  ==========================================

A stream that has started is never replayed: its failure reaches the caller
as an SSE ``error`` event (``pipeline.forward``). No I/O here.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from inferenceops.errors import (
    InferenceOpsError,
    UpstreamClientError,
    UpstreamConnectFailed,
    UpstreamInvalidResponse,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
)
from inferenceops.routing import health as kinds


class Retry(enum.Enum):
    NO = "no"
    ELSEWHERE = "elsewhere"  # never reached an engine: another replica, at once
    BACKOFF = "backoff"  # the engine refused it (429/503): again after a wait, budget allowing


@dataclass(frozen=True, slots=True)
class Verdict:
    retry: Retry
    #: What it says of the replica: None success, "busy" a 429, else a failure kind.
    health: str | None
    #: What the engine asked us to wait (Retry-After), if it said.
    wait_s: float | None = None


BUSY = "busy"


def judge(exc: InferenceOpsError) -> Verdict:
    """The verdict on one failed attempt (see the table in the module docstring)."""
    if isinstance(exc, UpstreamConnectFailed):
        return Verdict(Retry.ELSEWHERE, kinds.CONNECT)
    if isinstance(exc, UpstreamRateLimited):
        return Verdict(Retry.BACKOFF, BUSY, _seconds(exc.headers.get("Retry-After")))
    if isinstance(exc, UpstreamOverloaded):
        return Verdict(Retry.BACKOFF, kinds.SERVER_ERROR, exc.retry_after_s)
    if isinstance(exc, UpstreamClientError):
        return Verdict(Retry.NO, None)
    if isinstance(exc, UpstreamServerError):
        return Verdict(Retry.NO, kinds.SERVER_ERROR)
    if isinstance(exc, UpstreamTimeout):
        return Verdict(Retry.NO, kinds.TIMEOUT)
    if isinstance(exc, UpstreamInvalidResponse):
        return Verdict(Retry.NO, kinds.INVALID)
    return Verdict(Retry.NO, kinds.BROKEN)  # UpstreamUnavailable: lost after it was sent


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Per request: at most ``budget`` re-sends after a 429/503, each after a backoff of
    ``base_s · 2^k`` (full jitter), or the engine's Retry-After when it is at most
    ``max_wait_s`` (a longer one is the caller's to wait: the answer goes back)."""

    budget: int = 2
    base_s: float = 0.05
    max_wait_s: float = 2.0

    def wait(self, verdict: Verdict, attempt: int, rng: random.Random) -> float | None:
        """Seconds to wait before re-sending after the ``attempt``-th backoff retry (0-based),
        or None: do not retry."""
        if attempt >= self.budget:
            return None
        if verdict.wait_s is not None:
            return verdict.wait_s if verdict.wait_s <= self.max_wait_s else None
        ceiling: float = min(self.max_wait_s, self.base_s * 2.0 ** attempt)
        return ceiling * (0.5 + rng.random() / 2)
