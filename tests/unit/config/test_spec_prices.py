"""Prices in the platform file: ``price:`` from the beginning, ``prices:`` changes and per-deployment
prices; a bad amount, time, discount or a second price at one time names the line and the fix."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from inferenceops.config.spec import ConfigError, parse_platform
from inferenceops.platform.prices import Price

BASE = """\
deployments:
  - {name: sim, engine: simulator, profile: test-fast, served_model: m}
  - {name: spot, engine: simulator, profile: test-fast, served_model: m}
models:
  - name: chat
    deployment: sim
    price: {input_per_million: "0.60", output_per_million: "0.80", cached_input_per_million: "0.06",
            batch_discount_percent: 50}
    prices:
      - effective_from: "2026-12-10T12:00:00Z"
        input_per_million: "0.50"
        output_per_million: "0.70"
      - {effective_from: 2027-01-01, deployment: spot, input_per_million: "0.3", output_per_million: 0.4}
  - name: plain
    deployment: sim
    price: {input_per_million: "1", output_per_million: "2"}
"""
NOON = datetime(2026, 12, 10, 12, tzinfo=UTC).timestamp()
NEW_YEAR = datetime(2027, 1, 1, tzinfo=UTC).timestamp()


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_platform(text, source="p.yaml", loopback_base_url="http://x", environ={})


def test_a_schedule_prices_each_request_at_its_start_and_deployment() -> None:
    prices = parse(BASE).prices
    assert prices is not None and set(prices) == {"chat", "plain"}
    chat = prices["chat"]
    assert chat.at(NOON - 0.001) == Price(600_000_000, 800_000_000, 60_000_000, 5_000)
    assert chat.at(NOON) == Price(500_000_000, 700_000_000)
    assert chat.at(NEW_YEAR, "spot") == Price(300_000_000, 400_000_000)
    assert chat.at(NEW_YEAR - 1, "spot") == chat.at(NEW_YEAR, "sim") == Price(500_000_000, 700_000_000)
    assert prices["plain"].at(0.0) == Price(10**9, 2 * 10**9)


def test_a_file_without_prices_prices_nothing() -> None:
    platform = parse(BASE.split("models:")[0] + "models:\n  - {name: free, deployment: sim}\n")
    assert platform.prices == {}


@pytest.mark.parametrize(("old", "new", "says"), [
    ('output_per_million: "0.70"', 'output_per_million: "-0.70"',
     "line 12: models[0].prices[0].output_per_million: '-0.70' is negative: a price is 0 or more"),
    ('output_per_million: "0.70"', "output_per_million: twelve",
     "line 12: models[0].prices[0].output_per_million: 'twelve' is not a number: write a price "
     "per million tokens as decimal text"),
    ('"2026-12-10T12:00:00Z"', '"10/12/2026 12:00"',
     "line 10: models[0].prices[0].effective_from: '10/12/2026 12:00' is not a time in a known "
     "format: write an RFC 3339 time with its UTC offset, e.g. 2026-12-10T00:00:00Z"),
    ('"2026-12-10T12:00:00Z"', '"2026-12-10T12:00:00"',
     "line 10: models[0].prices[0].effective_from: '2026-12-10T12:00:00' has no UTC offset"),
    ("batch_discount_percent: 50", "batch_discount_percent: 150",
     "line 8: models[0].price.batch_discount_percent: 150 is not a percentage: the batch "
     "discount is from 0 to 100"),
    ('      - effective_from: "2026-12-10T12:00:00Z"\n', "      - effective_from: null\n",
     "line 10: models[0].prices[0].effective_from: is required: when this price starts"),
    ("2027-01-01, deployment: spot", "2026-12-10T12:00:00Z, deployment: nope",
     "line 13: models[0].prices[1].deployment: model 'chat' has a price for deployment 'nope', "
     "which is not defined"),
    ("2027-01-01, deployment: spot", "2026-12-10T13:00:00+01:00",
     "line 13: models[0].prices[1].effective_from: a second price for the model at "
     "2026-12-10T12:00:00+00:00"),
    ("input_per_million: \"0.50\"", "input_per_million: \"0.50\"\n        colour: red",
     "models[0].prices[0].colour: Extra inputs are not permitted"),
])
def test_a_bad_price_names_the_line_the_field_and_the_fix(old: str, new: str, says: str) -> None:
    assert old in BASE
    with pytest.raises(ConfigError) as caught:
        parse(BASE.replace(old, new, 1))
    assert says in str(caught.value), str(caught.value)


def test_a_deployments_price_from_the_beginning_may_omit_effective_from_but_not_twice() -> None:
    once = BASE.replace("{effective_from: 2027-01-01, deployment: spot",
                        "{deployment: spot")
    prices = parse(once).prices
    assert prices is not None and prices["chat"].at(0.0, "spot") == Price(300_000_000, 400_000_000)
    twice = once.replace('      - {deployment: spot, input_per_million: "0.3", output_per_million: 0.4}\n',
                         '      - {deployment: spot, input_per_million: "0.3", output_per_million: 0.4}\n'
                         '      - {deployment: spot, input_per_million: "0.2"}\n')
    with pytest.raises(ConfigError, match="line 14: models.0..prices.2..effective_from: a second "
                                          "price for deployment 'spot' from the beginning"):
        parse(twice)
