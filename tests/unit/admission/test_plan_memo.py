"""A plan from the policy's memo is exactly the plan worked out from scratch.

``plan_request`` keeps what applies to a (key, model) in ``Policy.memo`` and the
budget periods per UTC day. ``reference`` below is the plan built from the rules
every time (the implementation before the memo); whatever rules, keys, models and
instants — across day, week, month and year boundaries, with keys rotated or moved
between teams under the same id — the two agree field by field, check by check.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from inferenceops.admission.ledger import Check, CheckKind
from inferenceops.admission.plan import (
    MEMO_KEY,
    TEMPLATES,
    Plan,
    budget_checks,
    limit_checks,
    plan_request,
)
from inferenceops.platform import ApiKey, Principal
from inferenceops.platform.policy import (
    Budget,
    BudgetRule,
    LimitRule,
    ModelPrices,
    Period,
    Policy,
    Price,
    RateLimit,
    Scope,
)
from inferenceops.platform.prices import PriceSchedule


def reference(policy: Policy, key: ApiKey, model: str, prompt_estimate: int, max_output: int,
              now: float) -> Plan:
    checks: list[Check] = []
    reserve_tokens = prompt_estimate + max_output
    team = key.team_id
    limit_checks(checks, policy, Scope.KEY, key.id, key.meter, reserve_tokens)
    if team is not None:
        limit_checks(checks, policy, Scope.TEAM, team, team, reserve_tokens)
    limit_checks(checks, policy, Scope.MODEL, model, model, reserve_tokens)
    if team is not None:
        limit_checks(checks, policy, Scope.TEAM_MODEL, (team, model), f"{team}/{model}", reserve_tokens)
    prices = policy.prices.get(model)
    costs = [p.cost(prompt_estimate, max_output) for p in prices.in_force(now)] if prices else []
    max_cost = max(costs) if costs else None
    needs_usage = any(c.kind is CheckKind.TOKENS for c in checks)
    before = len(checks)
    budget_checks(checks, policy, key, max_cost or 0, now)
    needs_usage = needs_usage or (max_cost is not None and len(checks) > before)
    return Plan(tuple(checks), prompt_estimate, max_output, needs_usage)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


TEAMS, KEYS, MODELS = ("t1", "t2"), ("k1", "k2"), ("m", "n")
subjects = {Scope.KEY: st.sampled_from([*KEYS, "*"]), Scope.TEAM: st.sampled_from([*TEAMS, "*"]),
            Scope.MODEL: st.sampled_from(MODELS),
            Scope.TEAM_MODEL: st.tuples(st.sampled_from(TEAMS), st.sampled_from(MODELS))}
amounts = st.none() | st.integers(1, 10**6)
limit_rules = st.sampled_from(list(Scope)).flatmap(lambda scope: st.builds(
    LimitRule, st.just(scope), subjects[scope], st.builds(RateLimit, amounts, amounts, amounts)))
budget_rules = st.sampled_from([Scope.KEY, Scope.TEAM]).flatmap(lambda scope: st.builds(
    BudgetRule, st.just(scope), subjects[scope],
    st.builds(Budget, st.integers(0, 10**12), st.sampled_from(list(Period)), st.booleans())))
price = st.builds(Price, st.integers(0, 10**9), st.integers(0, 10**9))
schedule = st.builds(PriceSchedule, st.lists(st.tuples(
    st.none() | st.floats(at("2026-12-01T00:00:00"), at("2027-02-01T00:00:00")), price),
    max_size=3, unique_by=lambda entry: entry[0]))
model_prices = st.builds(ModelPrices, schedule, st.dictionaries(st.sampled_from(["d1", "d2"]), schedule,
                                                                  max_size=2))
policies = st.builds(
    Policy, limits=st.lists(limit_rules, max_size=6), budgets=st.lists(budget_rules, max_size=4),
    prices=st.dictionaries(st.sampled_from(MODELS), model_prices, max_size=2),
    team_names=st.dictionaries(st.sampled_from(TEAMS), st.sampled_from(["ml", "search"])))
keys = st.builds(lambda id, team, meter: ApiKey(id, "sk-io-x", Principal("u1"), team,
                                                  frozenset({"inference"}), meter_id=meter),
                 st.sampled_from(KEYS), st.none() | st.sampled_from(TEAMS), st.sampled_from(["", "k0"]))
# Instants around the ends of a day, an ISO week, a month and a year (2026-12-31 is a Thursday).
instants = st.sampled_from(["2026-12-27T23:59:59", "2026-12-28T00:00:00", "2026-12-30T12:00:00",
                            "2026-12-31T23:59:59.999", "2027-01-01T00:00:00", "2027-01-04T00:00:00",
                            "2027-01-31T23:59:59"]).map(at)
requests = st.tuples(keys, st.sampled_from(MODELS), st.integers(1, 10**5), st.integers(0, 10**5),
                     instants)


@settings(max_examples=300, deadline=None)
@given(policy=policies, asked=st.lists(requests, min_size=1, max_size=12))
def test_a_plan_is_the_same_as_one_worked_out_from_scratch(
        policy: Policy, asked: list[tuple[ApiKey, str, int, int, float]]) -> None:
    for key, model, prompt, max_output, now in asked:  # in any order: the memo is reused across them
        assert plan_request(policy, key, model, prompt, max_output, now) == \
            reference(policy, key, model, prompt, max_output, now)


def test_a_policy_remembers_a_bounded_number_of_key_and_model_pairs() -> None:
    policy = Policy(limits=[LimitRule(Scope.KEY, "*", RateLimit(tpm=1000))])
    now = at("2026-12-04T12:00:00")
    for n in range(TEMPLATES + 10):
        key = ApiKey(f"k{n}", "sk-io-x", Principal("u1"), None, frozenset({"inference"}))
        assert plan_request(policy, key, "m", 1, 1, now).checks[0].counter == f"tpm:key:k{n}"
    assert len(policy.memo[MEMO_KEY]) == TEMPLATES
    first = ApiKey("k0", "sk-io-x", Principal("u1"), None, frozenset({"inference"}))
    assert plan_request(policy, first, "m", 2, 3, now).checks[0].amount == 5  # forgotten, then again


def test_a_new_policy_plans_by_its_own_rules() -> None:
    key = ApiKey("k1", "sk-io-x", Principal("u1"), "t1", frozenset({"inference"}))
    now = at("2026-12-04T12:00:00")
    before = Policy(limits=[LimitRule(Scope.TEAM, "t1", RateLimit(rpm=10))], team_names={"t1": "ml"})
    assert [(c.limit, c.label) for c in plan_request(before, key, "m", 1, 1, now).checks] == [
        (10, "requests per minute of team 'ml'")]
    after = Policy(limits=[LimitRule(Scope.TEAM, "t1", RateLimit(rpm=5))], team_names={"t1": "ops"})
    assert [(c.limit, c.label) for c in plan_request(after, key, "m", 1, 1, now).checks] == [
        (5, "requests per minute of team 'ops'")]
