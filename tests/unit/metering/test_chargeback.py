"""GPU-time chargeback: shares by engine work, idle cost, and parts that add up to the cent."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferenceops.metering.chargeback import (
    Allocation,
    BucketAccount,
    CostModel,
    largest_remainder,
    round_cents,
)

MODEL = CostModel(prefill=Fraction(1), cached=Fraction(1, 10), decode=Fraction(4),
                  capacity_per_hour=Fraction(1000))


def test_engine_work_weighs_prefill_cache_hits_and_decode() -> None:
    assert MODEL.work(100, 10) == 100 + 40
    assert MODEL.work(100, 10, cached_tokens=80) == 20 + 8 + 40  # 80 hits at a tenth
    assert MODEL.work(100, 0, cached_tokens=500) == 10  # never more hits than prompt tokens


def account(*hours: tuple[Fraction, Fraction, dict[str, Fraction]]) -> BucketAccount:
    bucket = BucketAccount()
    for cost, capacity, work in hours:
        bucket.add_hour(cost, capacity, work)
    return bucket


def test_a_known_scenario_reconciles_to_the_cent() -> None:
    """2 GPUs at $2.50 an hour for 3 hours, one of them idle, and the GPU price raised to
    $3.10 for the third: team A saturates hour 1 (1,000 units of work), B half-fills hour 2."""
    capacity = MODEL.capacity_per_hour
    bucket = account((Fraction(500), capacity, {"A": Fraction(1000), "B": Fraction(0)}),
                     (Fraction(500), capacity, {"A": Fraction(0), "B": Fraction(500)}),
                     (Fraction(620), capacity, {}))  # idle, at the new price
    assert bucket.showback() == Allocation(1620, {"A": 500, "B": 250}, 870)
    # chargeback: the whole $16.20 by work, 1000 : 500
    assert bucket.chargeback() == Allocation(1620, {"A": 1080, "B": 540}, 0)


def test_an_hour_nobody_used_is_idle_in_both_views() -> None:
    idle = account((Fraction(333), MODEL.capacity_per_hour, {"A": Fraction(0)}))
    assert idle.showback() == Allocation(333, {"A": 0}, 333)
    assert idle.chargeback() == Allocation(333, {"A": 0}, 333)


def test_the_cost_is_rounded_once_per_bucket_not_per_hour() -> None:
    """Three hours of 1/3 cent each make 1 cent, not 0 (rounding each hour would lose it)."""
    third = Fraction(1, 3)
    bucket = account(*[(third, Fraction(0), {"A": Fraction(1)})] * 3)
    assert bucket.showback() == Allocation(1, {"A": 1}, 0)
    assert round_cents(Fraction(5, 2)) == 3 and round_cents(Fraction(249, 100)) == 2


def test_chargeback_spreads_idle_over_the_users() -> None:
    bucket = account((Fraction(1000), Fraction(100), {"A": Fraction(2), "B": Fraction(1),
                                                      "C": Fraction(0)}))
    assert bucket.chargeback() == Allocation(1000, {"A": 667, "B": 333, "C": 0}, 0)
    assert bucket.showback() == Allocation(1000, {"A": 20, "B": 10, "C": 0}, 970)


def test_busier_than_calibrated_shares_the_whole_cost() -> None:
    work = {"A": Fraction(3000), "B": Fraction(1000)}
    assert account((Fraction(800), MODEL.capacity_per_hour, work)).showback() == Allocation(
        800, {"A": 600, "B": 200}, 0)
    assert account((Fraction(800), Fraction(0), {"A": Fraction(1)})).showback().idle == 0


def test_largest_remainder_gives_leftover_cents_to_the_largest_remainders() -> None:
    assert largest_remainder(100, {"a": Fraction(1), "b": Fraction(1), "c": Fraction(1)}) == {
        "a": 34, "b": 33, "c": 33}  # a tie: by name
    assert largest_remainder(10, {"x": Fraction(1, 3), "y": Fraction(2, 3)}) == {"x": 3, "y": 7}
    with pytest.raises(ValueError):
        largest_remainder(10, {"x": Fraction(0)})
    with pytest.raises(ValueError):
        CostModel(decode=Fraction(-1))


weights = st.dictionaries(st.text("abcdefgh", min_size=1, max_size=3),
                          st.fractions(min_value=0, max_value=10**6), min_size=1, max_size=8)


@given(total=st.integers(0, 10**9), weights=weights)
def test_parts_add_up_exactly_and_stay_within_a_cent_of_the_exact_share(
        total: int, weights: dict[str, Fraction]) -> None:
    if sum(weights.values()) == 0:
        return
    parts = largest_remainder(total, weights)
    assert sum(parts.values()) == total
    weight_sum = sum(weights.values())
    for name, part in parts.items():
        assert abs(part - total * weights[name] / weight_sum) < 1
    for a in weights:  # more work never pays less
        for b in weights:
            if weights[a] > weights[b]:
                assert parts[a] >= parts[b]


hour = st.tuples(st.fractions(min_value=0, max_value=10**5),
                 st.fractions(min_value=0, max_value=10**6), weights)


@given(hours=st.lists(hour, min_size=1, max_size=24))
def test_showback_and_chargeback_always_sum_to_the_cost(
        hours: list[tuple[Fraction, Fraction, dict[str, Fraction]]]) -> None:
    bucket = account(*hours)
    cost = round_cents(sum((cost for cost, _, _ in hours), Fraction(0)))
    teams = {team for _, _, work in hours for team in work}
    for allocation in (bucket.showback(), bucket.chargeback()):
        assert allocation.cost_cents == cost == allocation.total
        assert all(share >= 0 for share in allocation.shares.values()) and allocation.idle >= 0
        assert set(allocation.shares) == teams
    if len(hours) == 1:  # within an hour, chargeback adds a share of idle: never less, to a cent
        shown, charged = bucket.showback(), bucket.chargeback()
        for team in teams:
            assert charged.shares[team] >= shown.shares[team] - 1


def _reference_split(total: int, weights: dict[str, Fraction]) -> dict[str, int]:
    """The rule written plainly in Fractions: floors, then the largest remainders (by name)."""
    weight_sum = sum(weights.values())
    exact = {name: total * w / weight_sum for name, w in weights.items()}
    parts = {name: int(share) for name, share in exact.items()}
    for name in sorted(exact, key=lambda n: (-(exact[n] - parts[n]), n))[:total - sum(parts.values())]:
        parts[name] += 1
    return parts


@given(total=st.integers(0, 10**9), weights=weights)
def test_the_integer_split_is_the_fraction_rule_exactly(total: int,
                                                        weights: dict[str, Fraction]) -> None:
    if sum(weights.values()) == 0:
        return
    assert largest_remainder(total, weights) == _reference_split(total, weights)
    as_ints = {name: w.numerator for name, w in weights.items() if w.denominator == 1}
    if as_ints and sum(as_ints.values()):
        assert largest_remainder(total, as_ints) == _reference_split(
            total, {n: Fraction(w) for n, w in as_ints.items()})
