"""``GET /v1/quota`` field by field, through the real handler (docs/admission.md, "What callers see").

A team reads its own limits and budgets from this document — scripts and the
console rely on its names — so every field is pinned here for a key under every
kind of rule: its own limits (a rule for that key; the ``"*"`` default for
others), its team's, a model's, its team's on a model, a hard monthly team
budget, a soft daily key budget and a lifetime one; while a request holds
reservations, and after a soft budget was overspent. mutmut found the
document's fields unguarded (``make mutation``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.support.asgi import request
from tests.unit.conftest import Harness
from tests.unit.gateway.test_critical_lines import (
    SOLO_KEY,
    TEAM_KEY,
    Held,
    chat,
    ledger,
    make_gateway,
    upstream,
)

from inferenceops.platform.policy import (
    Budget,
    BudgetRule,
    LimitRule,
    Period,
    Policy,
    Price,
    RateLimit,
    Scope,
    period_window,
)

__all__ = ["ledger", "make_gateway", "upstream"]  # fixtures shared with test_critical_lines

UNIT = 10**6  # nano-units per token: a token costs 0.001
POLICY = Policy(
    limits=[LimitRule(Scope.KEY, "*", RateLimit(rpm=99, tpm=99_999, concurrency=99)),
            LimitRule(Scope.KEY, "key_team", RateLimit(rpm=10, tpm=5000, concurrency=3)),
            LimitRule(Scope.TEAM, "team_ml", RateLimit(rpm=20)),
            LimitRule(Scope.MODEL, "chat-model", RateLimit(concurrency=7)),
            LimitRule(Scope.TEAM_MODEL, ("team_ml", "chat-model"), RateLimit(tpm=9000))],
    budgets=[BudgetRule(Scope.TEAM, "team_ml", Budget(5 * 10**9, Period.MONTHLY)),
             BudgetRule(Scope.KEY, "key_team", Budget(10**7, Period.DAILY, hard=False)),
             BudgetRule(Scope.KEY, "key_solo", Budget(10**9, Period.LIFETIME))],
    prices={"chat-model": Price.per_token(input=UNIT, output=UNIT)},
    team_names={"team_ml": "ml"})


async def quota(h: Harness, secret: str = TEAM_KEY) -> dict[str, Any]:
    resp = await request(h.app, "GET", "/v1/quota", headers={"Authorization": f"Bearer {secret}"})
    assert resp.status == 200
    doc: dict[str, Any] = resp.json()
    return doc


def limit(scope: str, model: str | None, name: str, description: str, unit: str, value: int,
          used: int) -> dict[str, Any]:
    return {"scope": scope, "model": model, "limit": name, "description": description,
            "unit": unit, "value": value, "used": used, "remaining": max(0, value - used)}


def without_resets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The limits, minus ``reset_seconds`` (checked on their own: they depend on the clock)."""
    out = []
    for item in doc["limits"]:
        reset = item.pop("reset_seconds")
        assert isinstance(reset, float) and 0.0 <= reset <= 61.0 and round(reset, 3) == reset
        out.append(item)
    return out


def ends(period: Period) -> str | None:
    _, end = period_window(period, time.time())
    return None if end is None else \
        datetime.fromtimestamp(end, UTC).isoformat().replace("+00:00", "Z")


async def test_a_team_key_sees_each_limit_it_is_checked_against_and_its_budgets(
        make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    h = await make_gateway(ledger, policy=POLICY)
    assert (await chat(h)).status == 200  # 3 prompt + 1 completion tokens: 0.004
    doc = await quota(h)
    assert {k: doc[k] for k in ("object", "key", "team_id")} == {
        "object": "quota", "key": {"id": "key_team", "prefix": TEAM_KEY[:8]}, "team_id": "team_ml"}
    assert without_resets(doc) == [
        limit("key", None, "requests_per_minute", "requests per minute of this API key",
              "requests", 10, 1),
        limit("key", None, "tokens_per_minute", "tokens per minute of this API key", "tokens",
              5000, 4),
        limit("key", None, "concurrent_requests", "concurrent requests of this API key",
              "requests", 3, 0),
        limit("team", None, "requests_per_minute", "requests per minute of team 'ml'", "requests",
              20, 1),
        limit("model", "chat-model", "concurrent_requests", "concurrent requests of model "
              "'chat-model'", "requests", 7, 0),
        limit("team_model", "chat-model", "tokens_per_minute", "tokens per minute of team 'ml' on "
              "model 'chat-model'", "tokens", 9000, 4),
    ]
    assert doc["budgets"] == [
        {"scope": "team", "description": "monthly budget of team 'ml'", "mode": "hard",
         "currency": "USD", "limit": "5", "spent": "0.004", "reserved": "0",
         "remaining": "4.996", "period_ends_at": ends(Period.MONTHLY)},
        {"scope": "key", "description": "daily budget of this API key", "mode": "soft",
         "currency": "USD", "limit": "0.01", "spent": "0.004", "reserved": "0",
         "remaining": "0.006", "period_ends_at": ends(Period.DAILY)},
    ]


async def test_while_a_request_runs_its_reservations_show_and_remaining_leaves_them_out(
        make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    h = await make_gateway(ledger, policy=POLICY)
    assert (await chat(h)).status == 200
    holder = Held(h, {"model": "chat-model", "messages": [{"role": "user", "content": "x"}],
                      "max_tokens": 2})
    await holder.started()
    doc = await quota(h)
    (team,) = (b for b in doc["budgets"] if b["scope"] == "team")
    reserved = float(team["reserved"])
    assert reserved > 0 and team["spent"] == "0.004"
    assert float(team["remaining"]) == pytest.approx(5 - 0.004 - reserved)
    running = {(i["scope"], i["limit"]): i["used"] for i in doc["limits"]}
    assert running[("key", "concurrent_requests")] == running[("model", "concurrent_requests")] == 1
    assert await holder.let_go() == 200


async def test_an_overspent_soft_budget_has_nothing_remaining(make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(budgets=[BudgetRule(Scope.KEY, "key_team", Budget(10**6, Period.WEEKLY,
                                                                      hard=False))],
                    prices={"chat-model": Price.per_token(input=UNIT, output=UNIT)})
    h = await make_gateway(ledger, policy=policy)
    assert (await chat(h)).status == 200  # spends 0.004 of 0.001
    (budget,) = (await quota(h))["budgets"]
    assert (budget["spent"], budget["reserved"], budget["remaining"]) == ("0.004", "0", "0")
    assert budget["period_ends_at"] == ends(Period.WEEKLY) and budget["mode"] == "soft"


async def test_a_key_without_a_team_sees_its_own_limits_and_a_lifetime_budget(
        make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    h = await make_gateway(ledger, policy=POLICY)
    doc = await quota(h, SOLO_KEY)
    assert doc["team_id"] is None and doc["key"] == {"id": "key_solo", "prefix": SOLO_KEY[:8]}
    assert [(i["scope"], i["model"], i["limit"], i["value"]) for i in doc["limits"]] == [
        ("key", None, "requests_per_minute", 99), ("key", None, "tokens_per_minute", 99_999),
        ("key", None, "concurrent_requests", 99), ("model", "chat-model", "concurrent_requests", 7)]
    assert doc["budgets"] == [
        {"scope": "key", "description": "lifetime budget of this API key", "mode": "hard",
         "currency": "USD", "limit": "1", "spent": "0", "reserved": "0", "remaining": "1",
         "period_ends_at": None}]
