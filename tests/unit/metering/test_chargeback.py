"""GPU-time chargeback: shares by engine work, idle cost, and parts that add up to the cent."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferenceops.metering.chargeback import (
    Allocation,
    CostModel,
    chargeback,
    deployment_cost_cents,
    largest_remainder,
    showback,
)

MODEL = CostModel(prefill=Fraction(1), cached=Fraction(1, 10), decode=Fraction(4),
                  capacity_per_hour=Fraction(1000))


def test_engine_work_weighs_prefill_cache_hits_and_decode() -> None:
    assert MODEL.work(100, 10) == 100 + 40
    assert MODEL.work(100, 10, cached_tokens=80) == 20 + 8 + 40  # 80 hits at a tenth
    assert MODEL.work(100, 0, cached_tokens=500) == 10  # never more hits than prompt tokens


def test_a_known_scenario_reconciles_to_the_cent() -> None:
    """2 GPUs at $2.50 an hour for 3 hours, one of them idle, and the GPU price raised to
    $3.10 for the third: team A caused 1,000 units of work in hour 1, team B 500 in hour 2."""
    hours = [(Fraction(250), {"A": Fraction(1000), "B": Fraction(0)}),  # A saturates hour 1
             (Fraction(250), {"A": Fraction(0), "B": Fraction(500)}),
             (Fraction(310), {"A": Fraction(0), "B": Fraction(0)})]   # idle, at the new price
    parts = [showback(deployment_cost_cents(2, Fraction(1), price), Fraction(1), MODEL, work)
             for price, work in hours]
    assert [p.cost_cents for p in parts] == [500, 500, 620]
    assert [(dict(p.shares), p.idle) for p in parts] == [
        ({"A": 500, "B": 0}, 0), ({"A": 0, "B": 250}, 250), ({"A": 0, "B": 0}, 620)]
    total = sum(p.cost_cents for p in parts)
    assert total == 1620 == sum(p.total for p in parts)  # $16.20: teams 750 cents, idle 870


def test_chargeback_spreads_idle_over_the_users() -> None:
    work = {"A": Fraction(2), "B": Fraction(1), "C": Fraction(0)}
    assert chargeback(1000, work) == Allocation(1000, {"A": 667, "B": 333, "C": 0}, 0)
    assert chargeback(1000, {"A": Fraction(0)}) == Allocation(1000, {"A": 0}, 1000)


def test_busier_than_calibrated_shares_the_whole_cost() -> None:
    work = {"A": Fraction(3000), "B": Fraction(1000)}
    assert showback(800, Fraction(1), MODEL, work) == Allocation(800, {"A": 600, "B": 200}, 0)
    uncalibrated = CostModel()
    assert showback(800, Fraction(1), uncalibrated, {"A": Fraction(1)}).idle == 0


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


@given(cost=st.integers(0, 10**7), hours=st.fractions(min_value=Fraction(1, 60), max_value=744),
       capacity=st.fractions(min_value=0, max_value=10**6), work=weights)
def test_showback_and_chargeback_always_sum_to_the_cost(cost: int, hours: Fraction,
                                                        capacity: Fraction,
                                                        work: dict[str, Fraction]) -> None:
    model = CostModel(capacity_per_hour=capacity)
    for allocation in (showback(cost, hours, model, work), chargeback(cost, work)):
        assert allocation.total == cost
        assert all(share >= 0 for share in allocation.shares.values()) and allocation.idle >= 0
        assert set(allocation.shares) == set(work)
