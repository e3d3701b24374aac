"""The policy becomes the right counters, most specific first, with exact reservations."""

from __future__ import annotations

from datetime import UTC, datetime

from inferenceops.admission.headers import format_reset, rate_limit_headers, retry_after_header
from inferenceops.admission.ledger import Check, CheckKind, CounterState
from inferenceops.admission.plan import plan_request
from inferenceops.platform import ApiKey, Principal
from inferenceops.platform.policy import (
    Budget,
    BudgetRule,
    LimitRule,
    Period,
    Policy,
    Price,
    RateLimit,
    Scope,
)

KEY = ApiKey("k1", "sk-io-abc", Principal("u1"), "t1", frozenset({"inference"}))
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()


def test_no_rules_means_no_checks_and_no_usage_tracking() -> None:
    plan = plan_request(Policy(), KEY, "m", 10, 100, NOW)
    assert plan.checks == () and not plan.needs_usage


def test_every_scope_is_checked_in_order_key_team_model_team_model_then_budgets() -> None:
    policy = Policy(
        limits=[LimitRule(Scope.TEAM_MODEL, ("t1", "m"), RateLimit(tpm=500)),
                LimitRule(Scope.MODEL, "m", RateLimit(concurrency=8)),
                LimitRule(Scope.TEAM, "t1", RateLimit(rpm=60, tpm=1000)),
                LimitRule(Scope.KEY, "*", RateLimit(rpm=10))],
        budgets=[BudgetRule(Scope.KEY, "k1", Budget(5 * 10**9, Period.DAILY, hard=False)),
                 BudgetRule(Scope.TEAM, "t1", Budget(10**11, Period.MONTHLY))],
        prices={"m": Price.per_token(input=100, output=400)}, team_names={"t1": "ml"})
    plan = plan_request(policy, KEY, "m", 10, 100, NOW)
    assert [(c.kind, c.counter, c.limit, c.amount) for c in plan.checks] == [
        (CheckKind.REQUESTS, "rpm:key:k1", 10, 1),
        (CheckKind.REQUESTS, "rpm:team:t1", 60, 1),
        (CheckKind.TOKENS, "tpm:team:t1", 1000, 110),
        (CheckKind.CONCURRENCY, "con:model:m", 8, 1),
        (CheckKind.TOKENS, "tpm:team_model:t1/m", 500, 110),
        (CheckKind.BUDGET, "bud:team:t1:m2026-11", 10**11, 10 * 100 + 100 * 400),
        (CheckKind.BUDGET, "bud:key:k1:d2026-11-28", 5 * 10**9, 41_000),
    ]
    assert plan.needs_usage
    assert plan.checks[2].label == "tokens per minute of team 'ml'"
    assert plan.checks[5].label == "monthly budget of team 'ml'" and plan.checks[5].hard
    assert not plan.checks[6].hard
    # Budget counters outlive their period (for reports): the month ends 3 days after NOW.
    assert plan.checks[5].ttl_s is not None and plan.checks[5].ttl_s > 3.5 * 86400


def test_a_key_without_a_team_is_checked_on_key_and_model_scopes_only() -> None:
    policy = Policy(limits=[LimitRule(Scope.TEAM, "*", RateLimit(rpm=1)),
                            LimitRule(Scope.MODEL, "m", RateLimit(rpm=2))])
    teamless = ApiKey("k2", "sk-io-x", Principal("u1", platform_role="platform-admin"), None,
                      frozenset({"inference"}))
    assert [c.counter for c in plan_request(policy, teamless, "m", 1, 1, NOW).checks] == ["rpm:model:m"]


def test_an_unpriced_model_reserves_no_money_and_needs_no_usage_for_budgets() -> None:
    policy = Policy(budgets=[BudgetRule(Scope.TEAM, "t1", Budget(10, Period.LIFETIME))])
    plan = plan_request(policy, KEY, "free-model", 10, 10, NOW)
    assert [(c.counter, c.amount, c.ttl_s) for c in plan.checks] == [("bud:team:t1:life", 0, None)]
    assert not plan.needs_usage


def test_reset_durations_are_written_like_openai() -> None:
    assert format_reset(0.25) == "250ms"
    assert format_reset(1.0) == "1s"
    assert format_reset(12.5) == "12.5s"
    assert format_reset(360.0) == "6m0s"
    assert retry_after_header(0.2) == {"Retry-After": "1", "retry-after-ms": "200"}
    assert retry_after_header(None) == {}


def test_headers_describe_the_tightest_counter_of_each_kind() -> None:
    checks = [Check(CheckKind.REQUESTS, "a", 100, 1, "a"), Check(CheckKind.REQUESTS, "b", 10, 1, "b"),
              Check(CheckKind.TOKENS, "c", 1000, 50, "c"), Check(CheckKind.CONCURRENCY, "d", 2, 1, "d")]
    states = [CounterState(100, 5, 60.0), CounterState(10, 9, 30.0), CounterState(1000, 50, 59.9),
              CounterState(2, 1, 0.0)]
    headers = dict(rate_limit_headers(checks, states) or [])
    assert headers == {b"x-ratelimit-limit-requests": b"10", b"x-ratelimit-remaining-requests": b"1",
                       b"x-ratelimit-reset-requests": b"30s", b"x-ratelimit-limit-tokens": b"1000",
                       b"x-ratelimit-remaining-tokens": b"950", b"x-ratelimit-reset-tokens": b"59.9s"}
    assert rate_limit_headers(checks[3:], states[3:]) is None


def test_per_key_counters_follow_the_rotation_lineage_not_the_key_id() -> None:
    rotated = ApiKey("k2", "sk-io-new", Principal("u1"), "t1", frozenset({"inference"}),
                     meter_id="k1")
    policy = Policy(limits=[LimitRule(Scope.KEY, "k2", RateLimit(rpm=5))],
                    budgets=[BudgetRule(Scope.KEY, "k2", Budget(10, Period.LIFETIME))])
    assert [c.counter for c in plan_request(policy, rotated, "m", 1, 1, NOW).checks] == [
        "rpm:key:k1", "bud:key:k1:life"]
