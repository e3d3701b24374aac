"""A worker's in-memory counters rebuilt from the usage ledger at start (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tests.unit.store import conftest as store

from inferenceops.admission.ledger import Check, CheckKind, Refused
from inferenceops.admission.memory_ledger import MemoryLedger
from inferenceops.admission.plan import budget_checks, plan_request
from inferenceops.control.spend_restore import restore_spend
from inferenceops.outbox import UsageRecord
from inferenceops.platform import ApiKey, Catalog, Identity, Principal, Snapshot
from inferenceops.platform.policy import (
    Budget,
    BudgetRule,
    LimitRule,
    Period,
    Policy,
    RateLimit,
    Scope,
    period_start,
    period_window,
)
from inferenceops.store import Database, repo
from inferenceops.store.repo.usage import insert_usage

postgres, templates, backend, store_url, db = (store.postgres, store.templates, store.backend,
                                               store.store_url, store.db)

NOW = time.time()  # the budget tests' instant: records, restore and checks all use it
MONTH_START = period_start(Period.MONTHLY, NOW)
DAY_START = period_start(Period.DAILY, NOW)


def record(n: int, *, at: float, team: str | None = "team_a", key: str = "key_a", cost: int = 0,
           tokens: int = 0, model: str = "m") -> UsageRecord:
    return UsageRecord(f"req-{n}-{at}", at, key, team, "usr_a", "user", model, "d", "d-0",
                       "chat/completions", "interactive", False, tokens, 0, True, cost, 200, None,
                       1.0, None)


def key(key_id: str, team: str = "team_a", meter: str = "") -> ApiKey:
    return ApiKey(key_id, "sk-io-x", Principal("usr_a", "user"), team, frozenset({"inference"}),
                  meter_id=meter)


async def store_records(db: Database, *records: UsageRecord) -> None:
    async with db.transaction() as tx:
        await insert_usage(tx, records)


def snapshot(policy: Policy, *keys: ApiKey) -> Snapshot:
    return Snapshot(Catalog([]), Identity([(k.id.encode(), k) for k in keys], {}), policy)


async def spent(ledger: MemoryLedger, scope: str, meter: str, period: Period) -> int:
    period_id, _ = period_window(period, NOW)
    return (await ledger.budget_totals(f"bud:{scope}:{meter}:{period_id}"))[0]


async def test_a_budgets_spend_this_period_is_restored_and_refuses_what_it_should(
        db: Database) -> None:
    """team_a spent 700 this month (and 5,000 last month, which no longer counts); its
    monthly budget of 1,000 then has room for 300, not 1,000."""
    last_month = MONTH_START - 86400
    await store_records(db, record(1, at=MONTH_START + 1, cost=300),
                        record(2, at=NOW - 5, cost=400),
                        record(3, at=last_month, cost=5000),
                        record(4, at=NOW - 5, team="team_b", key="key_b", cost=999))
    policy = Policy(budgets=[BudgetRule(Scope.TEAM, "team_a", Budget(1000, Period.MONTHLY))])
    ledger = MemoryLedger()
    assert await restore_spend(db, snapshot(policy, key("key_a")), ledger, now=NOW) == 1
    assert await spent(ledger, "team", "team_a", Period.MONTHLY) == 700
    assert await spent(ledger, "team", "team_b", Period.MONTHLY) == 0  # team_b has no budget
    checks: list[Check] = []
    budget_checks(checks, policy, key("key_a"), 301, NOW)
    assert isinstance(await ledger.admit("over", checks, 60), Refused)
    checks = []
    budget_checks(checks, policy, key("key_a"), 300, NOW)
    assert not isinstance(await ledger.admit("fits", checks, 60), Refused)


async def test_default_budgets_and_key_lineages(db: Database) -> None:
    """A ``"*"`` team budget gives each team its own; a key budget counts the keys rotated from
    it (their records are under the old key ids) and nothing of another key."""
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "t")
        user = await repo.create_user(tx, "u@example.com")
        await repo.set_membership(tx, team.id, user.id, "member")
        old = await repo.create_api_key(tx, name="k", prefix="sk-io-a", digest=b"a" * 32,
                                        user_id=user.id, team_id=team.id, scopes=("inference",))
        new = await repo.rotate_api_key(tx, old.id, prefix="sk-io-b", digest=b"b" * 32,
                                        overlap=timedelta(0))
    lineage = old.id  # the new key counts with the key it was rotated from
    await store_records(db, record(1, at=NOW - 10, team="team_a", key=old.id, cost=40),
                        record(2, at=NOW - 9, team="team_a", key=new.id, cost=2),
                        record(3, at=NOW - 8, team="team_b", key="key_other", cost=7),
                        record(4, at=DAY_START - 10, team="team_a", key=new.id, cost=1000))
    policy = Policy(budgets=[BudgetRule(Scope.TEAM, "*", Budget(10**6, Period.WEEKLY)),
                             BudgetRule(Scope.KEY, new.id, Budget(10**6, Period.DAILY))])
    ledger = MemoryLedger()
    live = key(new.id, meter=lineage)
    await restore_spend(db, snapshot(policy, live, key("key_other", "team_b")), ledger, now=NOW)
    week_a = 40 + 2 + (1000 if period_start(Period.WEEKLY, NOW) <= DAY_START - 10 else 0)
    assert await spent(ledger, "team", "team_a", Period.WEEKLY) == week_a
    assert await spent(ledger, "team", "team_b", Period.WEEKLY) == 7
    assert await spent(ledger, "key", lineage, Period.DAILY) == 42  # the old key's 40 too
    assert await spent(ledger, "key", "key_other", Period.DAILY) == 0  # it has no key budget


async def test_last_minutes_tokens_and_requests_count_against_per_minute_limits(
        db: Database) -> None:
    now = time.time()  # not the module's NOW: the suite may reach this test minutes later
    await store_records(db, *(record(n, at=now - 30, tokens=100) for n in range(3)),
                        record(9, at=now - 600, tokens=10_000))  # ten minutes ago: gone
    policy = Policy(limits=[LimitRule(Scope.TEAM, "team_a", RateLimit(rpm=5, tpm=1000)),
                            LimitRule(Scope.TEAM_MODEL, ("team_a", "m"), RateLimit(tpm=350))])
    ledger = MemoryLedger()
    assert await restore_spend(db, snapshot(policy, key("key_a")), ledger, now=now) == 3
    plan = plan_request(policy, key("key_a"), "m", 50, 0, time.time())
    # team×model: 300 of 350 tokens used, so 50 fits and 51 does not; team: 3 of 5 requests.
    assert not isinstance(await ledger.admit("a", plan.checks, 60), Refused)
    over = plan_request(policy, key("key_a"), "m", 1, 0, time.time())
    refused = await ledger.admit("b", over.checks, 60)
    assert isinstance(refused, Refused)
    assert over.checks[refused.index].counter == "tpm:team_model:team_a/m"
    states = await ledger.read([c for c in plan.checks if c.kind is CheckKind.REQUESTS])
    assert [s.used for s in states] == [4]  # 3 restored + the one just admitted


async def test_nothing_to_restore_without_rules_or_records(db: Database) -> None:
    ledger = MemoryLedger()
    assert await restore_spend(db, snapshot(Policy(), key("key_a")), ledger) == 0
    policy = Policy(budgets=[BudgetRule(Scope.TEAM, "*", Budget(10, Period.DAILY))])
    assert await restore_spend(db, snapshot(policy, key("key_a")), ledger) == 0
    assert ledger.counters() == 0


def test_period_start_is_the_start_of_the_period_window() -> None:
    moments = [datetime(2026, 12, 4, 13, 40, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC),
               datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC)]
    for moment in moments:
        now = moment.timestamp()
        for period in (Period.DAILY, Period.WEEKLY, Period.MONTHLY):
            start = period_start(period, now)
            assert start <= now
            before = period_window(period, start - 1)
            assert before[0] != period_window(period, now)[0]  # a second earlier: the last period
            assert before[1] == start
        assert period_start(Period.LIFETIME, now) == 0.0
    assert period_start(Period.WEEKLY, moments[0].timestamp()) == datetime(
        2026, 11, 30, tzinfo=UTC).timestamp()  # a Monday



