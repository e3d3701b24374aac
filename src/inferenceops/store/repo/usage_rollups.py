"""Rollups of the usage ledger: hour and day buckets summed from ``usage_records``, raw records
dropped after their retention, and reports read from the rollups alone.

**A step** (``roll_up``, one transaction) first locks the one ``usage_rollup_state`` row —
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so a second process finds it taken and skips;
SQLite's write lock (the transaction is ``BEGIN IMMEDIATE``) queues the second, which then
finds the work done and skips. Then it sums again, whole, every hour bucket that may have
changed, and every day bucket holding one of those hours (from the hour rows):

* **open hours** — from ``closed_until`` (hours before it are final) to now. An hour closes
  ``settle`` after it ends (records reach the ledger within the outbox's flush interval),
  when it is summed one last time and ``closed_until`` moves past it. While far behind (a
  first run over an old ledger, a long outage), a step closes at most ``step_hours`` hours
  and the caller steps again;
* **late hours** — closed hours that records arrived for after they closed (a store outage
  held them in an outbox): found among the ledger rows with ids above ``last_id``, the
  highest id the previous step saw (an index range on the primary key: only new rows).

Summing a bucket is ``DELETE`` its rows, ``INSERT … SELECT`` the sums, in the step's
transaction: a crash between steps leaves every bucket as the last committed step wrote it,
and running a step again (twice, or in two processes) writes the same rows. So the rollups
always equal the ledger's sums for closed hours, and for open hours as of the last step.

One case escapes on PostgreSQL, where ids are taken before commit and several writers commit
in any order: a record whose ``at`` is already in a closed hour *and* whose transaction
commits after a step saw a higher id. It would need a store outage and concurrent writers
at the same moment; the rollups would miss it until something sums that hour again.

**Retention** (``mark_retention`` then ``drop_raw`` in batches) deletes raw records older
than a cutoff: whole UTC days, never past ``closed_until`` (only rolled-up records go). It is
kept as ``raw_since``; late hours before it are never summed again (their raw records are
gone, the rollup stays). Rollups are never deleted.

**Four levels.** Each hour (and so each day) holds its rows per key; the same sums over
all keys — per team, model, adapter and deployment, with ``key_id`` = ``ALL_KEYS`` — made from
them in the same step; the sums over all keys and teams — per model, adapter and
deployment, ``key_id`` = ``ALL_TEAMS``, ``team_id`` NULL — made from the second; and the sums
over all keys, models and adapters — per team and deployment, ``key_id`` = ``ALL_MODELS``,
``model`` and ``adapter`` NULL — made from the second too (what the chargeback report shares
GPU cost by: one row per team and deployment an hour). A report reads exactly one level
(``_level``): the third when it asks nothing per team or key and the caller sees every team
(the platform's usual "by model" questions: a few rows per hour), else the fourth when it
asks nothing per key, model or adapter (the "by team" questions), else the second when it
asks nothing per key (no key grouping, filter or key-based scope: a team owner's usual
questions; several times fewer rows than the first), else the first. All are summed from
the same rows, so they always agree.

**Reports** (``read_report``) sum rollup rows of one granularity over ``[start, end)``, by
bucket and the asked dimensions, within the caller's scope and filters. Sorted in Python
(NULLs first on both backends); at most ``MAX_ROWS + 1`` rows are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Text,
    case,
    cast,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.metering.reports import DIMENSIONS, MAX_ROWS, MEASURES, UsageQuery, UsageReport, UsageRow
from inferenceops.store.errors import translating
from inferenceops.store.tables import UTCDateTime
from inferenceops.store.tables_identity import ApiKey
from inferenceops.store.tables_usage import UsageRollup, UsageRollupState
from inferenceops.store.tables_usage import UsageRow as Ledger

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: How long after its end an hour stays open (summed again at every step).
SETTLE = timedelta(minutes=5)
#: Closed hours summed by one step while catching up (a day: ~0.1-1 s of work at 10M records).
STEP_HOURS = 24
#: Raw records deleted per retention transaction.
DROP_BATCH = 20_000

_DIMS = ("team_id", "key_id", "model", "adapter", "deployment")
#: ``key_id`` of the rows that sum every key of a team, model, adapter and deployment (a key id
#: always has its ``key_`` prefix, so none is this).
ALL_KEYS = "*"
#: ``key_id`` of the third level: sums over all keys and teams (``team_id`` NULL).
ALL_TEAMS = "**"
#: ``key_id`` of the fourth level: sums over all keys, models and adapters per team and
#: deployment (``model`` and ``adapter`` NULL).
ALL_MODELS = "*m"
_SUMMED = (ALL_KEYS, ALL_TEAMS, ALL_MODELS)
_STATE_ID = 1


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    return floor_hour(moment).replace(hour=0)


@dataclass(frozen=True)
class RollupState:
    closed_until: datetime | None
    last_id: int
    refreshed_at: datetime | None
    raw_since: datetime | None


@dataclass(frozen=True)
class StepResult:
    """What one step did. ``skipped``: another process held the lock or had just done it."""

    skipped: bool
    hours: int = 0
    days: int = 0
    late_hours: int = 0
    caught_up: bool = True
    closed_until: datetime | None = None


_SKIPPED = StepResult(skipped=True)


async def _lock(session: AsyncSession) -> RollupState | None:
    """The state row, locked for this transaction; None when another transaction holds it."""
    s = UsageRollupState
    stmt = (select(s.closed_until, s.last_id, s.refreshed_at, s.raw_since)
            .where(s.id == _STATE_ID).with_for_update(skip_locked=True))
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None else RollupState(*row)


async def read_state(session: AsyncSession) -> RollupState | None:
    s = UsageRollupState
    with translating("reading the usage rollup state"):
        row = (await session.execute(select(s.closed_until, s.last_id, s.refreshed_at, s.raw_since)
                                     .where(s.id == _STATE_ID))).one_or_none()
    return None if row is None else RollupState(*row)


async def roll_up(session: AsyncSession, now: datetime, *, settle: timedelta = SETTLE,
                  step_hours: int = STEP_HOURS, min_gap: timedelta = timedelta(0)) -> StepResult:
    """One step in the caller's write transaction (see the module doc).

    ``min_gap``: when the rollups are caught up and were refreshed less than this long ago
    (by any process), do nothing — the processes sharing the work need not all redo it.
    """
    with translating("rolling up the usage ledger"):
        state = await _lock(session)
        if state is None:
            return _SKIPPED
        target = floor_hour(now - settle)  # hours before it are closed
        closed = state.closed_until
        if (closed is not None and closed >= target and state.refreshed_at is not None
                and now - state.refreshed_at < min_gap):
            return _SKIPPED
        max_id = int((await session.execute(select(func.coalesce(func.max(Ledger.id), 0)))).scalar_one())
        if closed is None:  # first step: everything from the oldest record is open
            oldest = (await session.execute(select(func.min(Ledger.at)))).scalar_one()
            closed = target if oldest is None else min(floor_hour(oldest), target)
            late: set[datetime] = set()
        else:
            late = await _late_hours(session, state, closed, max_id)
        new_closed = min(target, closed + step_hours * HOUR)
        caught_up = new_closed >= target
        hours = set(late) | _hours(closed, new_closed)
        if caught_up:
            hours |= _hours(target, floor_hour(now) + HOUR)
        for hour in sorted(hours):
            await _sum_hour(session, hour)
        days = sorted({floor_day(hour) for hour in hours})
        for day in days:
            await _sum_day(session, day)
        await session.execute(update(UsageRollupState).where(UsageRollupState.id == _STATE_ID).values(
            closed_until=new_closed, last_id=max(max_id, state.last_id),
            refreshed_at=now if caught_up else new_closed))
    return StepResult(False, len(hours), len(days), len(late), caught_up, new_closed)


def _hours(start: datetime, end: datetime) -> set[datetime]:
    found, hour = set(), start
    while hour < end:
        found.add(hour)
        hour += HOUR
    return found


def _hour_of(session: AsyncSession) -> Any:
    """SQL for the UTC hour a ledger row's ``at`` falls in (text on SQLite, a timestamp on PG)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date_trunc("hour", func.timezone("UTC", Ledger.at))
    return func.strftime("%Y-%m-%d %H:00:00", Ledger.at)


def _as_hour(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def _late_hours(session: AsyncSession, state: RollupState, closed: datetime,
                      max_id: int) -> set[datetime]:
    """Closed hours that rows written since the last step belong to (still held raw)."""
    if max_id <= state.last_id:
        return set()
    hour = _hour_of(session)
    conditions = [Ledger.id > state.last_id, Ledger.id <= max_id, Ledger.at < closed]
    if state.raw_since is not None:
        conditions.append(Ledger.at >= state.raw_since)
    rows = await session.execute(select(hour).where(*conditions).distinct())
    return {_as_hour(value) for (value,) in rows}


async def _sum_hour(session: AsyncSession, hour: datetime) -> None:
    """Replace the hour's rows by the sums of its ledger rows, then the other levels' sums."""
    r, u = Ledger, UsageRollup
    await session.execute(delete(u).where(u.granularity == "hour", u.bucket == hour))
    errored = or_(r.error_code.is_not(None), r.status >= 400)
    sums = select(
        literal("hour"), literal(hour, UTCDateTime()), *(getattr(r, d) for d in _DIMS),
        func.count(), func.sum(r.prompt_tokens), func.sum(r.completion_tokens),
        func.sum(r.cached_tokens), func.sum(case((r.tokens_reported, 0), else_=1)),
        func.sum(case((errored, 1), else_=0)), func.sum(r.cost_nanos),
    ).where(r.at >= hour, r.at < hour + HOUR).group_by(*(getattr(r, d) for d in _DIMS))
    await session.execute(insert(u).from_select(["granularity", "bucket", *_DIMS, *MEASURES], sums))
    keyless = [d for d in _DIMS if d != "key_id"]
    over_keys = select(
        literal("hour"), literal(hour, UTCDateTime()), *(getattr(u, d) for d in keyless),
        literal(ALL_KEYS), *(func.sum(getattr(u, m)) for m in MEASURES),
    ).where(u.granularity == "hour", u.bucket == hour, u.key_id.not_in(_SUMMED)).group_by(
        *(getattr(u, d) for d in keyless))
    await session.execute(insert(u).from_select(
        ["granularity", "bucket", *keyless, "key_id", *MEASURES], over_keys))
    teamless = [d for d in keyless if d != "team_id"]
    over_teams = select(
        literal("hour"), literal(hour, UTCDateTime()), *(getattr(u, d) for d in teamless),
        literal(ALL_TEAMS), *(func.sum(getattr(u, m)) for m in MEASURES),
    ).where(u.granularity == "hour", u.bucket == hour, u.key_id == ALL_KEYS).group_by(
        *(getattr(u, d) for d in teamless))
    await session.execute(insert(u).from_select(
        ["granularity", "bucket", *teamless, "key_id", *MEASURES], over_teams))
    over_models = select(
        literal("hour"), literal(hour, UTCDateTime()), u.team_id, u.deployment,
        literal(ALL_MODELS), *(func.sum(getattr(u, m)) for m in MEASURES),
    ).where(u.granularity == "hour", u.bucket == hour, u.key_id == ALL_KEYS).group_by(
        u.team_id, u.deployment)
    await session.execute(insert(u).from_select(
        ["granularity", "bucket", "team_id", "deployment", "key_id", *MEASURES], over_models))


async def _sum_day(session: AsyncSession, day: datetime) -> None:
    """Replace the day's rows by the sums of its hour rows (every level: ``key_id`` is grouped
    by, so the hours' ``ALL_KEYS`` rows sum into the day's, and so on)."""
    u = UsageRollup
    await session.execute(delete(u).where(u.granularity == "day", u.bucket == day))
    sums = select(
        literal("day"), literal(day, UTCDateTime()), *(getattr(u, d) for d in _DIMS),
        *(func.sum(getattr(u, m)) for m in MEASURES),
    ).where(u.granularity == "hour", u.bucket >= day, u.bucket < day + DAY).group_by(
        *(getattr(u, d) for d in _DIMS))
    await session.execute(insert(u).from_select(["granularity", "bucket", *_DIMS, *MEASURES], sums))


# ---- retention --------------------------------------------------------------------------------

async def mark_retention(session: AsyncSession, now: datetime, keep: timedelta) -> datetime | None:
    """Record (as ``raw_since``) and return the time before which raw records may be deleted:
    ``now - keep`` rounded down to a UTC day, never past ``closed_until``. None: nothing may go
    yet (nothing closed), or another process holds the lock."""
    with translating("marking the usage ledger's retention"):
        state = await _lock(session)
        if state is None or state.closed_until is None:
            return None
        cutoff = floor_day(min(now - keep, state.closed_until))
        if state.raw_since is not None and state.raw_since >= cutoff:
            return state.raw_since
        await session.execute(update(UsageRollupState).where(UsageRollupState.id == _STATE_ID)
                              .values(raw_since=cutoff))
    return cutoff


async def drop_raw(session: AsyncSession, before: datetime, *, limit: int = DROP_BATCH) -> int:
    """Delete at most ``limit`` ledger rows older than ``before``; returns how many."""
    with translating("dropping old usage records"):
        ids = select(Ledger.id).where(Ledger.at < before).limit(limit).scalar_subquery()
        result = await session.execute(delete(Ledger).where(Ledger.id.in_(ids)))
    return int(result.rowcount)  # type: ignore[attr-defined]


# ---- reports ----------------------------------------------------------------------------------

def _scope(query: UsageQuery) -> ColumnElement[bool]:
    scope, u = query.scope, UsageRollup
    if scope.everything:
        return true()
    parts: list[ColumnElement[bool]] = []
    if scope.teams:
        parts.append(u.team_id.in_(sorted(scope.teams)))
    if scope.keys:
        parts.append(u.key_id.in_(sorted(scope.keys)))
    if scope.lineages:
        lineage = sorted(scope.lineages)
        parts.append(u.key_id.in_(select(ApiKey.id).where(
            or_(ApiKey.id.in_(lineage), ApiKey.lineage_id.in_(lineage)))))
    if scope.owner is not None and scope.owner_teams:
        parts.append(u.key_id.in_(select(ApiKey.id).where(
            ApiKey.user_id == scope.owner, ApiKey.team_id.in_(sorted(scope.owner_teams)))))
    return or_(*parts) if parts else false()


def _order(row: UsageRow) -> tuple[Any, ...]:
    return (row.start, *((value is not None, value or "") for value in row.dims))


def over_all_keys(query: UsageQuery) -> bool:
    """Whether the report can read the rows summed over all keys: nothing in it is per key."""
    scope = query.scope
    return ("key" not in query.group_by and query.key_id is None
            and not (scope.keys or scope.lineages or scope.owner is not None))


def over_all_teams(query: UsageQuery) -> bool:
    """Whether it can read the rows summed over all keys and teams: nothing in it is per key
    or per team, and the caller sees every team."""
    return (over_all_keys(query) and query.scope.everything and "team" not in query.group_by
            and query.team_id is None)


def over_all_models(query: UsageQuery) -> bool:
    """Whether it can read the rows summed over all keys, models and adapters: nothing in it
    is per key, model or adapter."""
    return (over_all_keys(query) and not {"model", "adapter"} & set(query.group_by)
            and query.model is None and query.adapter is None)


def _level(query: UsageQuery) -> ColumnElement[bool]:
    """The one level of rows that answers ``query`` (each holds the whole ledger once)."""
    u = UsageRollup
    if over_all_teams(query):
        return u.key_id == ALL_TEAMS
    if over_all_models(query):
        return u.key_id == ALL_MODELS
    if over_all_keys(query):
        return u.key_id == ALL_KEYS
    return u.key_id.not_in(_SUMMED)


async def read_report(session: AsyncSession, query: UsageQuery) -> UsageReport:
    """The report ``query`` asks for, from the rollups (``UsageReport`` refuses too many rows)."""
    u = UsageRollup
    level = _level(query)
    with translating("reading usage rollups"):
        state = await read_state(session)
        if query.scope.empty:
            return UsageReport(query, (), None if state is None else state.refreshed_at)
        dims = [getattr(u, DIMENSIONS[name]) for name in query.group_by]
        # The bucket as the driver gives it, turned into a time once per distinct bucket (not
        # per row); sums cast to BIGINT, so PostgreSQL hands back ints rather than numerics.
        stmt = (select(type_coerce(u.bucket, Text), *dims,
                       *(cast(func.sum(getattr(u, m)), BigInteger) for m in MEASURES))
                .where(u.granularity == query.granularity, u.bucket >= query.start,
                       u.bucket < query.end, level, _scope(query),
                       *(getattr(u, column) == value for column, value in query.filters().items()))
                .group_by(u.bucket, *dims).limit(MAX_ROWS + 1))
        width = 1 + len(dims)
        buckets: dict[Any, datetime] = {}
        rows = []
        for row in await session.execute(stmt):
            raw = row[0]
            start = buckets.get(raw)
            if start is None:
                start = buckets[raw] = _as_hour(raw)
            rows.append(UsageRow(start, row[1:width], row[width:]))
    rows.sort(key=_order)
    return UsageReport(query, tuple(rows), None if state is None else state.refreshed_at)
