"""The admission part of the platform YAML: valid rules load; bad ones name the line and the fix."""

from __future__ import annotations

import pytest

from inferenceops.config.spec import ConfigError, parse_platform
from inferenceops.platform.policy import Budget, ModelPrices, Period, Price, RateLimit, Scope

BASE = """\
currency: EUR
deployments:
  - name: sim
    engine: simulator
    profile: test-fast
    served_model: sim-model
    capacity: 4
    queue: {max_waiting: 10, interactive_max_wait_s: 2}
models:
  - name: chat
    deployment: sim
    price: {input_per_million: "0.15", output_per_million: "0.60"}
    max_output_tokens: 512
"""


def parse(extra: str):  # type: ignore[no-untyped-def]
    return parse_platform(BASE + extra, source="p.yaml", loopback_base_url="http://x", environ={})


def test_limits_budgets_prices_capacity_and_weights_load() -> None:
    platform = parse("""\
teams:
  - {name: ml, weight: 3}
limits:
  - {key: "*", rpm: 600}
  - {team: ml, tpm: 200000, concurrency: 32}
  - {model: chat, rpm: 6000}
  - {team: ml, model: chat, tpm: 50000}
budgets:
  - {team: ml, amount: "500", currency: EUR, period: monthly}
  - {key: key_abc, amount: "2.5", currency: eur, period: daily, mode: soft}
  - {team: nobody-yet, amount: "1", currency: EUR, period: lifetime}
""")
    model = platform.catalog.model("chat")
    assert model is not None and model.max_output_tokens == 512
    assert model.deployment.capacity == 4 and model.deployment.queue.max_waiting == 10
    assert model.deployment.queue.interactive_max_wait_s == 2
    assert platform.prices == {"chat": ModelPrices.constant(Price.per_token(input=150, output=600))}
    static = platform.policy
    assert static.currency == "EUR"
    teams = {"ml": "team_1"}
    assert static.team_weights(teams) == {"team_1": 3}
    rules = {(r.scope, r.subject): r.limit for r in static.limit_rules(teams)}
    assert rules == {(Scope.KEY, "*"): RateLimit(rpm=600),
                     (Scope.TEAM, "team_1"): RateLimit(tpm=200000, concurrency=32),
                     (Scope.MODEL, "chat"): RateLimit(rpm=6000),
                     (Scope.TEAM_MODEL, ("team_1", "chat")): RateLimit(tpm=50000)}
    budgets = {(b.scope, b.subject): b.budget for b in static.budget_rules(teams)}
    assert budgets == {(Scope.TEAM, "team_1"): Budget(500 * 10**9, Period.MONTHLY, hard=True),
                       (Scope.KEY, "key_abc"): Budget(25 * 10**8, Period.DAILY, hard=False)}


@pytest.mark.parametrize(("extra", "line", "words"), [
    ("limits:\n  - {team: ml, rpm: 0}\n", 15, "greater than or equal to 1"),
    ("limits:\n  - {team: ml, tpm: -5}\n", 15, "greater than or equal to 1"),
    ("limits:\n  - {team: ml}\n", 15, "at least one of rpm, tpm, concurrency"),
    ("limits:\n  - {key: '*', team: ml, rpm: 1}\n", 15, "one of: key, team, model"),
    ("limits:\n  - {region: eu, rpm: 1}\n", 15, "region"),
    ("limits:\n  - {model: nope, rpm: 1}\n", 15, "'nope' is not defined"),
    ("budgets:\n  - {team: ml, amount: '5', currency: XYZ, period: daily}\n", 15, "unknown currency"),
    ("budgets:\n  - {team: ml, amount: '5', currency: USD, period: daily}\n", 15,
     "platform's currency is EUR"),
    ("budgets:\n  - {team: ml, amount: '0', currency: EUR, period: daily}\n", 15, "greater than 0"),
    ("budgets:\n  - {team: ml, amount: '5', currency: EUR, period: hourly}\n", 15, "daily"),
    ("budgets:\n  - {team: ml, key: k, amount: '5', currency: EUR, period: daily}\n", 15,
     "exactly one of: team, key"),
    ("teams:\n  - {name: ml, weight: 0}\n", 15, "greater than or equal to 1"),
])
def test_bad_admission_rules_are_refused_naming_the_line(extra: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(extra)
    message = str(caught.value)
    assert f"line {line}" in message and words in message, message


def test_an_unknown_platform_currency_is_refused() -> None:
    with pytest.raises(ConfigError, match="line 1: currency: .*unknown currency 'ABC'"):
        parse_platform(BASE.replace("EUR", "ABC"), source="p.yaml", loopback_base_url="http://x",
                       environ={})


def test_a_budget_above_what_a_ledger_counts_exactly_is_refused() -> None:
    with pytest.raises(ConfigError, match="budgets\\[0\\].amount: Input should be less than or equal to"):
        parse("budgets:\n  - {team: ml, amount: '10000000', currency: EUR, period: lifetime}\n")
    assert parse("budgets:\n  - {team: ml, amount: '9000000', currency: EUR, period: lifetime}\n")
