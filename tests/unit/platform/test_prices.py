"""Prices and schedules: exact nano-unit arithmetic, rounded up once; the entry in force at a time."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferenceops.platform.policy import Policy
from inferenceops.platform.prices import MILLION, ModelPrices, Price, PriceSchedule

counts = st.integers(min_value=0, max_value=10**9)
per_million = st.integers(min_value=0, max_value=10**18)


def exact(price: Price, prompt: int, completion: int, cached: int, batch: bool) -> Fraction:
    """The cost as a fraction of a nano-unit, the way a person would work it out."""
    cached = min(cached, prompt)
    cached_price = price.input_per_million if price.cached_input_per_million is None \
        else price.cached_input_per_million
    cost = Fraction((prompt - cached) * price.input_per_million + cached * cached_price
                    + completion * price.output_per_million, MILLION)
    if batch:
        cost *= Fraction(10_000 - price.batch_discount_bp, 10_000)
    return cost


@given(prompt=counts, completion=counts, cached=counts, batch=st.booleans(),
       price=st.builds(Price, per_million, per_million, st.none() | per_million,
                       st.integers(min_value=0, max_value=10_000)))
def test_cost_is_the_exact_amount_rounded_up_to_a_nano_unit(price: Price, prompt: int, completion: int,
                                                            cached: int, batch: bool) -> None:
    want = exact(price, prompt, completion, cached, batch)
    got = price.cost(prompt, completion, cached, batch=batch)
    assert got == math.ceil(want)
    assert got - 1 < want <= got  # never under-charged, never a whole nano-unit over


def test_known_amounts() -> None:
    # $0.60 / $0.80 per million, cached input $0.06, 50 % off for batch.
    price = Price(600_000_000, 800_000_000, 60_000_000, 5_000)
    assert price.cost(1_000, 500) == 600_000 + 400_000
    # 400 of the 1,000 prompt tokens came from the engine's cache.
    assert price.cost(1_000, 500, 400) == 600 * 600 + 400 * 60 + 500 * 800
    assert price.cost(1_000, 500, 400, batch=True) == (600 * 600 + 400 * 60 + 500 * 800) // 2
    # One token at $0.000001 per million is a millionth of a nano-unit: one nano-unit, not free.
    assert Price(1, 1).cost(1, 0) == 1 and Price(1, 1).cost(0, 0) == 0
    # 7.5 nano-units a token, 50 % off: 3.75 each — three tokens are 11.25, so 12.
    assert Price(7_500_000, 0, None, 5_000).cost(3, 0, batch=True) == 12


def test_cached_tokens_cost_input_without_a_cached_price_and_never_exceed_the_prompt() -> None:
    price = Price.per_token(input=10, output=100)
    assert price.cost(5, 1, cached_tokens=3) == price.cost(5, 1) == 150
    assert Price(10 * MILLION, 0, 0).cost(5, 0, cached_tokens=99) == 0
    assert Price(10 * MILLION, 0, 0).cost(5, 0, cached_tokens=-4) == 50


def test_only_batch_requests_get_the_discount() -> None:
    price = Price.per_token(input=10, output=10)
    discounted = Price(10 * MILLION, 10 * MILLION, None, 2_500)
    assert discounted.cost(10, 10) == price.cost(10, 10) == 200
    assert discounted.cost(10, 10, batch=True) == 150
    assert Price(10 * MILLION, 0, None, 10_000).cost(10, 0, batch=True) == 0


starts = st.none() | st.floats(min_value=0, max_value=4e9, allow_nan=False)


@given(entries=st.dictionaries(starts, st.integers(min_value=0, max_value=10**6), max_size=12),
       when=st.floats(min_value=-1e9, max_value=5e9, allow_nan=False))
def test_the_price_in_force_is_the_latest_that_started_at_or_before_the_time(
        entries: dict[float | None, int], when: float) -> None:
    schedule = PriceSchedule((start, Price(amount)) for start, amount in entries.items())
    started = [(-math.inf if s is None else s, a) for s, a in entries.items()
               if s is None or s <= when]
    expected = Price(max(started)[1]) if started else None
    assert schedule.at(when) == expected


def test_a_change_applies_from_its_instant_exactly() -> None:
    noon = 1_796_904_000.0  # 2026-12-10T12:00:00Z
    schedule = PriceSchedule([(None, Price(1)), (noon, Price(2))])
    assert schedule.at(noon - 1e-6) == Price(1)
    assert schedule.at(noon) == Price(2)
    assert PriceSchedule([(noon, Price(2))]).at(noon - 1) is None


def test_two_entries_at_one_instant_are_refused() -> None:
    with pytest.raises(ValueError, match="same instant"):
        PriceSchedule([(5.0, Price(1)), (5.0, Price(2))])


def test_a_deployments_price_overrides_the_models_while_in_force() -> None:
    prices = ModelPrices(PriceSchedule([(None, Price(10))]),
                         {"spot": PriceSchedule([(100.0, Price(4))]),
                          "gone": PriceSchedule([])})
    assert prices.at(50.0, "spot") == Price(10)  # not yet: the model's price
    assert prices.at(150.0, "spot") == Price(4)
    assert prices.at(150.0, "other") == prices.at(150.0) == Price(10)
    assert sorted(p.input_per_million for p in prices.in_force(150.0)) == [4, 10]
    assert "gone" not in prices.deployments


def test_the_policy_prices_at_a_time_and_reserves_the_most_a_request_may_cost() -> None:
    prices = ModelPrices(PriceSchedule([(None, Price.per_token(1, 1)), (100.0, Price.per_token(2, 2))]),
                         {"dear": PriceSchedule([(None, Price.per_token(5, 5))])})
    policy = Policy(prices={"m": prices, "flat": Price.per_token(3, 3)})
    assert policy.price("m", 99.0) == Price.per_token(1, 1)
    assert policy.price("m", 100.0) == Price.per_token(2, 2)
    assert policy.price("m", 100.0, "dear") == Price.per_token(5, 5)
    assert policy.price("flat", 0.0) == Price.per_token(3, 3)
    assert policy.price("unpriced", 0.0) is None
    assert policy.max_cost("m", 100.0, 10, 10) == 100  # the dearest deployment's price
    assert policy.max_cost("unpriced", 100.0, 10, 10) is None
    later_only = Policy(prices={"m": ModelPrices(PriceSchedule([(100.0, Price.per_token(1, 1))]))})
    assert later_only.max_cost("m", 99.0, 10, 10) is None and later_only.max_cost("m", 100.0, 1, 1) == 2
