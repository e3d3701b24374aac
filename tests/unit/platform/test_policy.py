"""Policy values: exact money, UTC periods, and rules that can only tighten."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferenceops.platform.policy import (
    NANOS,
    Budget,
    BudgetRule,
    LimitRule,
    Period,
    Policy,
    RateLimit,
    Scope,
    from_nanos,
    period_window,
    to_nanos,
)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("text", "nanos"), [("1", 10**9), ("0.15", 150_000_000), ("12.5", 12_500_000_000),
                                             (Decimal("0.0000000001"), 1), ("0", 0)])
def test_money_converts_to_nanos_exactly_rounding_up(text: object, nanos: int) -> None:
    assert to_nanos(text) == nanos  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["abc", "nan", "inf", ""])
def test_money_that_is_not_a_finite_number_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        to_nanos(bad)


def test_nanos_print_as_plain_decimals() -> None:
    assert from_nanos(12_500_000_000) == "12.5"
    assert from_nanos(0) == "0"
    assert from_nanos(1) == "0.000000001"
    assert from_nanos(3 * 10**9) == "3"


@given(st.integers(-(10**20), 10**20))
def test_nanos_print_exactly_as_the_decimal_quotient_would(nanos: int) -> None:
    text = format(Decimal(nanos) / NANOS, "f")
    assert from_nanos(nanos) == (text.rstrip("0").rstrip(".") if "." in text else text)


def test_periods_are_utc_days_iso_weeks_months_and_lifetime() -> None:
    now = at("2026-12-31T23:59:59")
    assert period_window(Period.DAILY, now) == ("d2026-12-31", at("2027-01-01T00:00:00"))
    assert period_window(Period.MONTHLY, now) == ("m2026-12", at("2027-01-01T00:00:00"))
    # 2026-12-31 is a Thursday of ISO week 53 of 2026, which began on Monday 28 December.
    assert period_window(Period.WEEKLY, now) == ("w2026-W53", at("2027-01-04T00:00:00"))
    assert period_window(Period.LIFETIME, now) == ("life", None)
    assert period_window(Period.MONTHLY, at("2026-02-10T00:00:00"))[1] == at("2026-03-01T00:00:00")


def test_two_rules_on_one_subject_merge_to_the_stricter_of_each() -> None:
    policy = Policy(limits=[LimitRule(Scope.TEAM, "t1", RateLimit(rpm=100, tpm=1000)),
                            LimitRule(Scope.TEAM, "t1", RateLimit(rpm=50, concurrency=4))],
                    budgets=[BudgetRule(Scope.TEAM, "t1", Budget(10, Period.DAILY, hard=False)),
                             BudgetRule(Scope.TEAM, "t1", Budget(20, Period.DAILY, hard=True)),
                             BudgetRule(Scope.TEAM, "t1", Budget(99, Period.MONTHLY))])
    assert policy.limit(Scope.TEAM, "t1") == RateLimit(rpm=50, tpm=1000, concurrency=4)
    assert sorted(policy.budgets(Scope.TEAM, "t1"), key=lambda b: b.limit) == [
        Budget(10, Period.DAILY, hard=True), Budget(99, Period.MONTHLY)]


def test_an_explicit_rule_wins_over_the_star_default_of_its_scope() -> None:
    policy = Policy(limits=[LimitRule(Scope.KEY, "*", RateLimit(rpm=10)),
                            LimitRule(Scope.KEY, "k1", RateLimit(rpm=500))])
    assert policy.limit(Scope.KEY, "k1") == RateLimit(rpm=500)
    assert policy.limit(Scope.KEY, "k2") == RateLimit(rpm=10)
    assert policy.limit(Scope.MODEL, "*") is None


def test_an_empty_policy_says_so_and_weights_default_to_one() -> None:
    assert Policy().empty
    policy = Policy(team_weights={"t1": 3})
    assert policy.empty and policy.weight("t1") == 3 and policy.weight("t2") == 1
    assert policy.weight(None) == 1


def test_a_star_budget_gives_each_key_its_own_unless_it_has_one() -> None:
    policy = Policy(budgets=[BudgetRule(Scope.KEY, "*", Budget(5, Period.DAILY)),
                             BudgetRule(Scope.KEY, "k1", Budget(50, Period.DAILY))])
    assert policy.budgets(Scope.KEY, "k1") == (Budget(50, Period.DAILY),)
    assert policy.budgets(Scope.KEY, "k2") == (Budget(5, Period.DAILY),)
    assert policy.budgets(Scope.TEAM, "t1") == ()


def test_a_period_window_is_the_same_from_any_instant_in_it_and_moves_on_at_its_end() -> None:
    """Windows are remembered per UTC day: every instant of a day, and the last instant before
    a boundary, gives what a fresh computation gives; the boundary itself starts the next."""
    for period, start, end in [
            (Period.DAILY, "2026-12-31T00:00:00", "2027-01-01T00:00:00"),
            (Period.WEEKLY, "2026-12-28T00:00:00", "2027-01-04T00:00:00"),
            (Period.MONTHLY, "2026-02-01T00:00:00", "2026-03-01T00:00:00")]:
        first = period_window(period, at(start))
        assert first[1] == at(end)
        for now in (at(start) + 0.5, at(start) + 86399.999, at(end) - 0.001):
            assert period_window(period, now) == first
        assert period_window(period, at(end))[0] != first[0]
        assert period_window(period, at(end))[1] > at(end)
