"""From the platform YAML to admission rules: defaults for every team, rules waiting for their team.

``test_config`` loads one rule of each kind; mutmut (``make mutation``) found these
cases unguarded: ``team: "*"`` limits and budgets (each team by itself), a rule
whose team does not exist yet being skipped *without* dropping the rules after
it, and prices turned into nano-units exactly.
"""

from __future__ import annotations

from inferenceops.config.spec import parse_platform
from inferenceops.platform.policy import Budget, BudgetRule, LimitRule, Period, Price, RateLimit, Scope

BASE = """\
currency: USD
deployments:
  - name: sim
    engine: simulator
    profile: test-fast
    served_model: sim-model
models:
  - name: chat
    deployment: sim
    price: {input_per_million: "0.000001", output_per_million: "1234.5"}
"""


def parse(extra: str):  # type: ignore[no-untyped-def]
    return parse_platform(BASE + extra, source="p.yaml", loopback_base_url="http://x", environ={})


def test_prices_per_million_become_exact_nano_units_per_million() -> None:
    # 1234.5 per million is 1,234,500,000,000 nano-units per million tokens; 0.000001 per
    # million is 1,000 nano-units per million: a token of it is a thousandth of a nano-unit,
    # charged as one nano-unit (rounded up once per request, never to a free request).
    prices = parse("").prices
    assert prices is not None
    price = prices["chat"].at(0.0)
    assert price == Price(input_per_million=1_000, output_per_million=1_234_500_000_000)
    assert price.cost(1, 0) == 1 and price.cost(1000, 0) == 1 and price.cost(1001, 0) == 2
    assert price.cost(0, 1) == 1_234_500


def test_every_team_by_itself_and_rules_waiting_for_their_team() -> None:
    static = parse("""\
limits:
  - {team: later, rpm: 1}
  - {team: "*", rpm: 100}
  - {team: later, model: chat, tpm: 5}
  - {team: ml, concurrency: 3}
budgets:
  - {team: later, amount: "1", currency: USD, period: daily}
  - {team: "*", amount: "50", currency: USD, period: weekly, mode: soft}
  - {team: ml, amount: "7", currency: USD, period: lifetime}
""").policy
    teams = {"ml": "team_1"}
    assert list(static.limit_rules(teams)) == [
        LimitRule(Scope.TEAM, "*", RateLimit(rpm=100)),
        LimitRule(Scope.TEAM, "team_1", RateLimit(concurrency=3)),
    ]
    assert list(static.budget_rules(teams)) == [
        BudgetRule(Scope.TEAM, "*", Budget(50 * 10**9, Period.WEEKLY, hard=False)),
        BudgetRule(Scope.TEAM, "team_1", Budget(7 * 10**9, Period.LIFETIME, hard=True)),
    ]
    # Once the team exists, its rules apply too, in the order written.
    teams["later"] = "team_2"
    assert [r.subject for r in static.limit_rules(teams)] == [
        "team_2", "*", ("team_2", "chat"), "team_1"]
    assert [r.subject for r in static.budget_rules(teams)] == ["team_2", "*", "team_1"]


def test_a_team_literally_named_star_is_not_every_team() -> None:
    static = parse("""\
limits:
  - {team: "**", rpm: 1}
budgets:
  - {team: "**", amount: "1", currency: USD, period: daily}
""").policy
    assert list(static.limit_rules({})) == [] and list(static.budget_rules({})) == []
    assert [r.subject for r in static.limit_rules({"**": "team_9"})] == ["team_9"]
    assert [r.subject for r in static.budget_rules({"**": "team_9"})] == ["team_9"]
