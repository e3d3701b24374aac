"""Running one batch line through the pipeline, and what its outcome means for the queue.

A line runs exactly as an interactive request would (``Pipeline.run`` over
``RequestFacts.for_batch_line`` and a ``CollectingSink``): grants, limits, budgets,
guardrails, routing and metering all apply; the facts mark it a batch line, so it is
admitted as background work and priced with the batch discount.

``run_line`` turns what happened into one ``Outcome``:

* ``done``: record the line — ``ok`` (the engine's 2xx answer, for the output file) or not
  (a 4xx of validation, a refusal that will not pass by waiting, or a failure after the
  last attempt, for the error file), with the line OpenAI's batch files hold::

      {"id": "batch_req_…", "custom_id": "…",
       "response": {"status_code": 200, "request_id": "…", "body": {…}}, "error": null}

* ``retry``: put the line back for later — a refusal that waiting cures (rate or
  concurrency limits, a full queue, no replica up, an engine overloaded or unreachable),
  with exponential backoff (``backoff_s``), while attempts remain.

No store here: the executor records the outcome under its lease — with the attempt's
usage record (``Outcome.usage``), in the same transaction, so a line is billed exactly
when its result is recorded: once, however often a crash makes it run.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, replace
from typing import Any

import orjson

from inferenceops.batch.batch_lines import ENDPOINTS
from inferenceops.error_shape import error_document
from inferenceops.errors import (
    BudgetExceeded,
    InferenceOpsError,
    RateLimited,
    Unavailable,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from inferenceops.outbox import UsageRecord
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.kernel import Pipeline
from inferenceops.pipeline.sink import CollectingSink
from inferenceops.platform import ApiKey, Snapshot
from inferenceops.store.records import ClaimedLine

#: Refusals that waiting cures. A budget is not one of them: it refills on its period, far
#: beyond a batch's retries, so the line fails with the budget's own error.
RETRYABLE = (RateLimited, Unavailable, UpstreamUnavailable, UpstreamServerError, UpstreamTimeout)
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 120.0


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    retry: bool
    status_code: int | None
    line: bytes  # the output or error file's line ("" when the line is retried)
    usage: UsageRecord | None = None  # the attempt's usage record (settle's), if it ran


def request_line_id(line: ClaimedLine) -> str:
    return f"batch_req_{line.batch_id.removeprefix('batch_')}_{line.line}"


def result_line(line_id: str, custom_id: str, status_code: int | None, request_id: str | None,
                body: Any, error: dict[str, Any] | None = None) -> bytes:
    """One line of an output or error file, as OpenAI writes them."""
    response = None if status_code is None else {"status_code": status_code,
                                                 "request_id": request_id, "body": body}
    return orjson.dumps({"id": line_id, "custom_id": custom_id, "response": response,
                         "error": error})


def backoff_s(attempts: int) -> float:
    """Seconds to wait before the next attempt: doubling from 2 s, at most 2 min, jittered."""
    wait: float = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** max(0, attempts - 1))
    return wait * random.uniform(0.5, 1.0)


def failed(line: ClaimedLine, code: str, message: str) -> Outcome:
    """A line that could not be run at all (its bytes are gone, its key revoked…)."""
    return Outcome(False, False, None, result_line(request_line_id(line), line.custom_id, None,
                                                   None, None, {"code": code, "message": message}))


async def run_line(pipeline: Pipeline, snapshot: Snapshot, key: ApiKey, line: ClaimedLine,
                   raw: bytes, *, max_attempts: int, timeout_s: float) -> Outcome:
    """Run ``line`` (its input-file bytes ``raw``) as ``key``; see the module doc."""
    line_id = request_line_id(line)
    try:
        body = orjson.dumps(orjson.loads(raw)["body"])
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, KeyError, TypeError):
        return failed(line, "invalid_request", "The line is not a batch request any more.")
    facts = RequestFacts.for_batch_line(ENDPOINTS[line.endpoint], body, key, line_id)
    request_id = facts.request_id.decode()
    sink = CollectingSink()
    try:
        async with asyncio.timeout(timeout_s):
            await pipeline.run(snapshot, facts, sink)
    except TimeoutError:
        if line.attempts < max_attempts:
            return Outcome(False, True, None, b"", facts.usage_record)
        return replace(failed(line, "timeout", f"The request did not finish within "
                              f"{timeout_s:g} s."), usage=facts.usage_record)
    except InferenceOpsError as exc:
        if isinstance(exc, RETRYABLE) and not isinstance(exc, BudgetExceeded) \
                and line.attempts < max_attempts:
            return Outcome(False, True, exc.status, b"", facts.usage_record)
        return Outcome(False, False, exc.status, result_line(
            line_id, line.custom_id, exc.status, request_id, error_document(exc)),
            facts.usage_record)
    status = sink.status or 500
    try:
        answer: Any = orjson.loads(sink.body)
    except orjson.JSONDecodeError:
        answer = sink.body.decode("utf-8", "replace")
    ok = 200 <= status < 300
    return Outcome(ok, False, status, result_line(line_id, line.custom_id, status, request_id,
                                                  answer), facts.usage_record)
