"""Usage rollups against the raw ledger, on SQLite and PostgreSQL.

The one invariant: once a step has run at time *now*, every hour and day bucket up to now
holds exactly the sums of the ledger's records in it — however the steps were split, run
twice, interrupted by a crash, or raced by other runners, and whenever the records arrived.
Checked by summing the records in Python (``expected``) and reading every rollup row back
(``actual``). Plus retention (raw records go, rollups stay, nothing unrolled goes) and
reports (scope, filters, grouping) read from the rollups.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, update

from inferenceops.control.usage_rollup import UsageRollups
from inferenceops.metering.reports import EVERYTHING, MEASURES, UsageQuery, UsageScope
from inferenceops.outbox.records import UsageRecord
from inferenceops.store import Database
from inferenceops.store.repo import usage_rollups as rollups
from inferenceops.store.repo.usage import insert_usage
from inferenceops.store.repo.usage_rollups import (
    ALL_KEYS,
    ALL_MODELS,
    ALL_TEAMS,
    StepResult,
    drop_raw,
    mark_retention,
    over_all_keys,
    over_all_models,
    over_all_teams,
    read_report,
    read_state,
    roll_up,
)
from inferenceops.store.tables_usage import UsageRollup, UsageRollupState, UsageRow

NOW = datetime(2026, 12, 4, 12, 30, tzinfo=UTC)
TOP = NOW.replace(minute=0)  # the hour NOW is in
HOUR = timedelta(hours=1)
Key = tuple[datetime, str | None, str, str | None, str | None, str | None]
_ids = itertools.count()


def record(at: datetime, *, team: str | None = "t1", key: str = "k1", model: str | None = "m1",
           adapter: str | None = None, deployment: str | None = "d1", prompt: int = 10,
           completion: int = 5, cached: int = 0, reported: bool = True, cost: int = 1000,
           status: int = 200, error: str | None = None) -> UsageRecord:
    return UsageRecord(f"req-{next(_ids)}", at.timestamp(), key, team, "usr_1", "user", model,
                       deployment, None, "chat", "interactive", False, prompt, completion,
                       reported, cost, status, error, 12.5, None, cached, adapter)


def bucket_of(at: float, granularity: str) -> datetime:
    moment = datetime.fromtimestamp(at, UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if granularity == "day" else moment


def expected(records: Iterable[UsageRecord], granularity: str) -> dict[Key, tuple[int, ...]]:
    """The rows each bucket must hold: per key, the same summed over all keys (``*``), over
    all keys and teams (``**``, team NULL), and over all keys, models and adapters (``*m``,
    model and adapter NULL)."""
    sums: dict[Key, list[int]] = {}
    for r in records:
        errored = r.error_code is not None or r.status >= 400
        values = (1, r.prompt_tokens, r.completion_tokens, r.cached_tokens,
                  0 if r.tokens_reported else 1, 1 if errored else 0, r.cost_nanos)
        for team_id, key_id, model, adapter in (
                (r.team_id, r.key_id, r.model, r.adapter), (r.team_id, ALL_KEYS, r.model, r.adapter),
                (None, ALL_TEAMS, r.model, r.adapter), (r.team_id, ALL_MODELS, None, None)):
            key = (bucket_of(r.at, granularity), team_id, key_id, model, adapter, r.deployment)
            row = sums.setdefault(key, [0] * len(MEASURES))
            for i, value in enumerate(values):
                row[i] += value
    return {k: tuple(v) for k, v in sums.items()}


async def actual(db: Database, granularity: str) -> dict[Key, tuple[int, ...]]:
    u = UsageRollup
    found: dict[Key, tuple[int, ...]] = {}
    async with db.read() as tx:
        rows = await tx.execute(select(u.bucket, u.team_id, u.key_id, u.model, u.adapter,
                                       u.deployment, *(getattr(u, m) for m in MEASURES))
                                .where(u.granularity == granularity))
        for row in rows:
            key: Key = tuple(row[:6])  # type: ignore[assignment]
            assert key not in found, f"two rows for one group: {key}"
            found[key] = tuple(int(v) for v in row[6:])
    return found


async def insert(db: Database, records: list[UsageRecord]) -> None:
    async with db.transaction() as tx:
        await insert_usage(tx, records)


async def step(db: Database, now: datetime = NOW, **options: Any) -> StepResult:
    async with db.transaction() as tx:
        return await roll_up(tx, now, **options)


async def catch_up(db: Database, now: datetime = NOW, **options: Any) -> list[StepResult]:
    done = []
    while True:
        result = await step(db, now, **options)
        done.append(result)
        if result.skipped or result.caught_up:
            return done


async def assert_match(db: Database, records: list[UsageRecord]) -> None:
    for granularity in ("hour", "day"):
        assert await actual(db, granularity) == expected(records, granularity), granularity


def spread(start: datetime, hours: int, per_hour: int = 3) -> list[UsageRecord]:
    """Records over ``hours`` hours from ``start``, with every dimension varying (NULLs too)."""
    out = []
    for h in range(hours):
        for i in range(per_hour):
            n = h * per_hour + i
            out.append(record(start + h * HOUR + timedelta(minutes=7 * i + 1),
                              team=None if n % 5 == 0 else f"t{n % 3}", key=f"k{n % 4}",
                              model=None if n % 11 == 0 else f"m{n % 2}",
                              adapter="lora-a" if n % 6 == 0 else None,
                              deployment=None if n % 13 == 0 else "d1",
                              prompt=n, completion=2 * n, cached=n // 2, reported=n % 4 != 0,
                              cost=1000 * n + 7, status=500 if n % 9 == 0 else 200,
                              error="client_disconnected" if n % 10 == 0 else None))
    return out


# ---- the invariant ----------------------------------------------------------------------------

async def test_rollups_equal_the_ledgers_sums_per_hour_and_day(db: Database) -> None:
    records = spread(NOW - 60 * HOUR, 61)
    await insert(db, records)
    steps = await catch_up(db)
    assert [s.caught_up for s in steps] == [False, False, True]  # 24 closed hours a step
    await assert_match(db, records)
    async with db.read() as tx:
        state = await read_state(tx)
    assert state is not None
    assert state.closed_until == datetime(2026, 12, 4, 12, tzinfo=UTC)
    assert state.refreshed_at == NOW
    async with db.read() as tx:
        assert state.last_id == await tx.scalar(select(func.max(UsageRow.id)))


async def test_running_again_changes_nothing(db: Database) -> None:
    records = spread(NOW - 30 * HOUR, 31)
    await insert(db, records)
    await catch_up(db)
    first = (await actual(db, "hour"), await actual(db, "day"))
    again = await step(db, min_gap=timedelta(0))
    assert not again.skipped and again.caught_up
    assert (await actual(db, "hour"), await actual(db, "day")) == first
    await assert_match(db, records)


async def test_a_step_refreshed_recently_is_skipped(db: Database) -> None:
    await insert(db, spread(NOW - 3 * HOUR, 3))
    await catch_up(db)
    assert (await step(db, NOW + timedelta(seconds=10), min_gap=timedelta(seconds=30))).skipped
    assert not (await step(db, NOW + timedelta(seconds=40), min_gap=timedelta(seconds=30))).skipped


async def test_open_hours_follow_the_ledger_and_close_once(db: Database) -> None:
    first = spread(NOW - 2 * HOUR, 2)
    await insert(db, first)
    await catch_up(db)
    later = [record(NOW + timedelta(minutes=m), key="k9") for m in (1, 20)]  # the current hour
    await insert(db, later)
    await catch_up(db, NOW + timedelta(minutes=25))
    await assert_match(db, first + later)
    # The 12:00 hour closes 5 minutes after it ends; then it is final.
    result = (await catch_up(db, NOW + timedelta(minutes=36)))[-1]
    assert result.closed_until == datetime(2026, 12, 4, 13, tzinfo=UTC)


async def test_records_arriving_after_their_hour_closed_are_summed_in(db: Database) -> None:
    records = spread(NOW - 50 * HOUR, 51)
    await insert(db, records)
    await catch_up(db)
    late = [record(NOW - 40 * HOUR + timedelta(minutes=3), team="late", key="kl"),
            record(NOW - 49 * HOUR, team="t1", key="k1", cost=5),
            record(NOW - 2 * HOUR, key="k2")]  # an outbox that could not write for two days
    await insert(db, late)
    result = await step(db, NOW + timedelta(minutes=1), min_gap=timedelta(0))
    assert result.late_hours == 3
    await assert_match(db, records + late)


async def test_a_crash_inside_a_step_leaves_the_last_steps_rows(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    records = spread(NOW - 40 * HOUR, 41)
    await insert(db, records)
    await step(db)  # the first 24 hours closed
    before = (await actual(db, "hour"), await actual(db, "day"))

    async def crash(*args: Any) -> None:
        raise RuntimeError("killed mid-step")

    with monkeypatch.context() as patch:
        patch.setattr(rollups, "_sum_day", crash)  # hours summed, then the process dies
        with pytest.raises(RuntimeError):
            await step(db)
    assert (await actual(db, "hour"), await actual(db, "day")) == before
    await catch_up(db)
    await assert_match(db, records)


async def test_concurrent_runners_work_one_at_a_time_and_agree(
        db: Database, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    records = spread(NOW - 100 * HOUR, 101, per_hour=2)
    await insert(db, records)
    inside, most = 0, 0
    real = rollups._sum_hour

    async def counted(session: Any, hour: datetime) -> None:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        try:
            await asyncio.sleep(0)  # give the other runners every chance to overlap
            await real(session, hour)
        finally:
            inside -= 1

    monkeypatch.setattr(rollups, "_sum_hour", counted)
    runners = [UsageRollups(store_url, interval_s=60, retention_days=0, clock=NOW.timestamp,
                            step_hours=7) for _ in range(4)]
    more = spread(NOW - 30 * HOUR, 30, per_hour=1)

    async def writer() -> None:
        for chunk in (more[:10], more[10:20], more[20:]):
            await insert(db, chunk)
            await asyncio.sleep(0)

    try:
        await asyncio.gather(writer(), *(r.run_once(min_gap=timedelta(0)) for r in runners))
        await runners[0].run_once(min_gap=timedelta(0))
    finally:
        for runner in runners:
            await runner.stop()
    assert most == 1  # never two steps at once
    await assert_match(db, records + more)


# ---- property: any arrival order, any step sizes, crashes --------------------------------------

events = st.lists(st.one_of(
    st.tuples(st.just("insert"), st.lists(st.tuples(
        st.integers(0, 80 * 60),  # minutes before the clock the request ended
        st.sampled_from([None, "t1", "t2"]), st.sampled_from(["k1", "k2", "k3"]),
        st.sampled_from([None, "m1", "m2"]), st.sampled_from([None, "lora"]),
        st.integers(0, 10_000), st.booleans(), st.sampled_from([200, 200, 429, 500])),
        min_size=1, max_size=8)),
    st.tuples(st.just("step"), st.integers(1, 30)),  # closed hours a step may sum
    st.tuples(st.just("crash"), st.integers(1, 30)),
    st.tuples(st.just("wait"), st.integers(1, 400)),  # minutes the clock moves
), max_size=14)


async def _reset(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute(delete(UsageRow))
        await tx.execute(delete(UsageRollup))
        await tx.execute(update(UsageRollupState).values(closed_until=None, last_id=0,
                                                         refreshed_at=None, raw_since=None))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=events)
async def test_any_history_ends_equal_to_the_ledger(db: Database, script: list[Any]) -> None:
    await _reset(db)
    clock, inserted = NOW, []
    for kind, arg in script:
        if kind == "insert":
            batch = [record(clock - timedelta(minutes=ago), team=team, key=key, model=model,
                            adapter=adapter, prompt=tokens, completion=tokens // 3, cost=tokens * 7,
                            reported=reported, status=status)
                     for ago, team, key, model, adapter, tokens, reported, status in arg]
            await insert(db, batch)
            inserted += batch
        elif kind == "step":
            await step(db, clock, step_hours=arg, min_gap=timedelta(0))
        elif kind == "crash":
            with pytest.raises(RuntimeError):
                async with db.transaction() as tx:
                    await roll_up(tx, clock, step_hours=arg)
                    raise RuntimeError("the process died before commit")
        else:
            clock += timedelta(minutes=arg)
    await catch_up(db, clock, step_hours=5, min_gap=timedelta(0))
    await assert_match(db, inserted)


# ---- retention --------------------------------------------------------------------------------

async def _raw_count(db: Database) -> int:
    async with db.read() as tx:
        return int(await tx.scalar(select(func.count()).select_from(UsageRow)) or 0)


async def test_retention_drops_rolled_up_raw_records_and_keeps_the_rollups(db: Database) -> None:
    old = [record(NOW - timedelta(days=d, hours=3)) for d in (95, 93, 91)]
    kept = [record(NOW - timedelta(days=d)) for d in (89, 10, 0)]
    await insert(db, old + kept)
    await catch_up(db, step_hours=24 * 100)
    days_before = await actual(db, "day")
    async with db.transaction() as tx:
        cutoff = await mark_retention(tx, NOW, timedelta(days=90))
    assert cutoff == datetime(2026, 9, 5, tzinfo=UTC)  # NOW − 90 days, down to midnight
    async with db.transaction() as tx:
        assert await drop_raw(tx, cutoff, limit=2) == 2
    async with db.transaction() as tx:
        assert await drop_raw(tx, cutoff, limit=2) == 1
    assert await _raw_count(db) == len(kept)
    assert await actual(db, "day") == days_before
    # Late records for an hour before the cutoff are not summed again (its raw records are gone).
    await insert(db, [record(NOW - timedelta(days=95, hours=3))])
    result = await step(db, NOW + timedelta(minutes=1), min_gap=timedelta(0))
    assert result.late_hours == 0 and await actual(db, "day") == days_before


async def test_retention_never_drops_what_is_not_rolled_up(db: Database) -> None:
    first, second = record(NOW - timedelta(days=200)), record(NOW - timedelta(days=150))
    await insert(db, [first, second])
    async with db.transaction() as tx:
        assert await mark_retention(tx, NOW, timedelta(days=90)) is None  # nothing rolled up yet
    result = await step(db, step_hours=48)  # far behind: two days closed, 150 days to go
    assert not result.caught_up and result.closed_until is not None
    async with db.transaction() as tx:
        cutoff = await mark_retention(tx, NOW, timedelta(days=90))
    assert cutoff is not None and cutoff <= result.closed_until < NOW - timedelta(days=150)
    async with db.transaction() as tx:
        assert await drop_raw(tx, cutoff) == 1
    async with db.read() as tx:
        left = (await tx.execute(select(UsageRow.request_id))).scalars().all()
    assert left == [second.request_id]  # not rolled up yet: kept
    assert await actual(db, "day") == expected([first], "day")


async def test_the_service_rolls_up_then_retains(store_url: str, db: Database) -> None:
    records = [record(NOW - timedelta(days=d)) for d in (120, 100, 2)]
    await insert(db, records)
    service = UsageRollups(store_url, interval_s=60, retention_days=90, clock=NOW.timestamp,
                           step_hours=24 * 30)
    try:
        result = await service.run_once()
        assert (result.steps, result.caught_up, result.dropped) == (4, True, 2)  # 120 days, 30 a step
        again = await service.run_once()
        assert again.skipped and again.dropped == 0  # refreshed just now; retention not due
    finally:
        await service.stop()
    assert await _raw_count(db) == 1
    await assert_match_days(db, records)


async def assert_match_days(db: Database, records: list[UsageRecord]) -> None:
    assert await actual(db, "day") == expected(records, "day")


# ---- reports ----------------------------------------------------------------------------------

def query(**overrides: Any) -> UsageQuery:
    base = UsageQuery(start=NOW - timedelta(days=5), end=NOW + timedelta(days=1), granularity="day",
                      scope=EVERYTHING)
    return replace(base, **overrides)


async def test_reports_group_filter_and_scope_the_rollups(db: Database) -> None:
    records = spread(NOW - 50 * HOUR, 51)
    await insert(db, records)
    await catch_up(db)
    async with db.read() as tx:
        whole = await read_report(tx, query())
        by_team = await read_report(tx, query(group_by=("team", "model")))
        only_t1 = await read_report(tx, query(group_by=("key",), team_id="t1"))
        hours = await read_report(tx, query(granularity="hour", start=TOP - 5 * HOUR, end=TOP))
        scoped = await read_report(tx, query(scope=UsageScope(teams=frozenset({"t2"}))))
        widened = await read_report(tx, query(scope=UsageScope(teams=frozenset({"t2"})),
                                              team_id="t1"))
        nobody = await read_report(tx, query(scope=UsageScope()))
    per_key = [v for k, v in expected(records, "day").items()
               if k[2] not in (ALL_KEYS, ALL_TEAMS, ALL_MODELS)]
    assert whole.totals == tuple(map(sum, zip(*per_key, strict=True)))
    assert [r.start.day for r in whole.rows] == [2, 3, 4] and all(r.dims == () for r in whole.rows)
    assert by_team.totals == whole.totals
    assert by_team.rows[0].dims[0] is None  # NULL teams sort first on both backends
    t1 = [r for r in records if r.team_id == "t1"]
    assert only_t1.totals[0] == len(t1)
    assert {r.dims for r in only_t1.rows} == {(r.key_id,) for r in t1}
    in_hours = [r for r in records if TOP - 5 * HOUR <= datetime.fromtimestamp(r.at, UTC) < TOP]
    assert hours.totals[0] == len(in_hours) and len(hours.rows) == 5
    assert scoped.totals[0] == len([r for r in records if r.team_id == "t2"])
    assert widened.rows == () and nobody.rows == ()
    assert whole.current_to == NOW


async def test_reports_over_all_keys_agree_with_the_per_key_rows(db: Database) -> None:
    records = spread(NOW - 50 * HOUR, 51)
    await insert(db, records)
    await catch_up(db)
    team_t1 = UsageScope(teams=frozenset({"t1"}))
    cases = [query(group_by=("team", "model")), query(granularity="hour", group_by=("adapter",)),
             query(scope=team_t1, group_by=("deployment",)), query(group_by=("model",)),
             query(granularity="hour", group_by=("model", "deployment")),
             query(group_by=("team",)), query(granularity="hour", group_by=("team", "deployment"))]
    assert [over_all_teams(case) for case in cases] == [False, True, False, True, True, False,
                                                        False]
    # Not per team, or per team but not per model or adapter: the fourth level ("*m").
    assert [over_all_models(case) and not over_all_teams(case) for case in cases] == [
        False, False, True, False, False, True, True]
    for fast in cases:
        assert over_all_keys(fast)
        per_key = replace(fast, group_by=(*fast.group_by, "key"))
        assert not over_all_keys(per_key)
        async with db.read() as tx:
            summed, detailed = await read_report(tx, fast), await read_report(tx, per_key)
        assert summed.totals == detailed.totals and summed.totals[0] > 0
        regrouped: dict[tuple[Any, ...], list[int]] = {}
        for row in detailed.rows:
            sums = regrouped.setdefault((row.start, *row.dims[:-1]), [0] * len(MEASURES))
            for i, value in enumerate(row.measures):
                sums[i] += value
        assert {(r.start, *r.dims): list(r.measures) for r in summed.rows} == regrouped
    # Anything per key reads the per-key rows; "*" is never a key a filter can name.
    for per_key_query in (query(key_id="k1"), query(scope=UsageScope(keys=frozenset({"k1"}))),
                          query(scope=UsageScope(owner="usr_1", owner_teams=frozenset({"t1"})))):
        assert not over_all_keys(per_key_query)
    async with db.read() as tx:
        assert (await read_report(tx, query(key_id=ALL_KEYS))).rows == ()
        assert (await read_report(tx, query(key_id=ALL_TEAMS))).rows == ()
        assert (await read_report(tx, query(key_id=ALL_MODELS))).rows == ()
        by_key = await read_report(tx, query(group_by=("key",)))
    assert not {ALL_KEYS, ALL_TEAMS, ALL_MODELS} & {row.dims[0] for row in by_key.rows}
