"""Plans and rate-limit headers at their edges (no I/O).

``test_plan`` covers the order and amounts of every scope; these pin what mutmut
found loose (``make mutation``): a model's own token limit reserves the request's
tokens like every other token limit; of two counters equally tight, the headers
describe the more specific one; reset times at the minute and millisecond
boundaries; ``retry-after-ms`` is never below one millisecond.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from inferenceops.admission.headers import format_reset, rate_limit_headers, retry_after_header
from inferenceops.admission.ledger import Check, CheckKind, CounterState
from inferenceops.admission.plan import plan_request
from inferenceops.platform import ApiKey, Principal
from inferenceops.platform.policy import LimitRule, Policy, RateLimit, Scope

KEY = ApiKey("k1", "sk-io-abc", Principal("u1"), "t1", frozenset({"inference"}))
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC).timestamp()


def test_every_token_limit_reserves_the_prompt_estimate_plus_the_max_output() -> None:
    policy = Policy(limits=[LimitRule(scope, subject, RateLimit(tpm=10_000)) for scope, subject in (
        (Scope.KEY, "k1"), (Scope.TEAM, "t1"), (Scope.MODEL, "m"), (Scope.TEAM_MODEL, ("t1", "m")))])
    plan = plan_request(policy, KEY, "m", 12, 300, NOW)
    assert [(c.counter, c.amount) for c in plan.checks] == [
        ("tpm:key:k1", 312), ("tpm:team:t1", 312), ("tpm:model:m", 312), ("tpm:team_model:t1/m", 312)]


def test_of_two_counters_equally_tight_the_headers_describe_the_more_specific() -> None:
    checks = [Check(CheckKind.REQUESTS, "rpm:key:k1", 10, 1, "key"),
              Check(CheckKind.REQUESTS, "rpm:team:t1", 50, 1, "team")]
    states = [CounterState(10, 5, 12.0), CounterState(50, 45, 40.0)]  # 5 left on each
    assert dict(rate_limit_headers(checks, states) or []) == {
        b"x-ratelimit-limit-requests": b"10", b"x-ratelimit-remaining-requests": b"5",
        b"x-ratelimit-reset-requests": b"12s"}


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "0ms"), (0.0004, "0ms"), (0.999, "999ms"), (59.9994, "59.999s"), (60.0, "1m0s"),
    (60.5, "1m1s"), (61.0, "1m1s"), (3599.2, "60m0s"), (-0.5, "0ms"),
])
def test_reset_times_at_their_boundaries(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


def test_retry_after_is_never_below_a_second_nor_a_millisecond() -> None:
    assert retry_after_header(0.0001) == {"Retry-After": "1", "retry-after-ms": "1"}
    assert retry_after_header(2.0001) == {"Retry-After": "3", "retry-after-ms": "2001"}
