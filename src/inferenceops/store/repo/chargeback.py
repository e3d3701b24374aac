"""What the chargeback report reads: the deployments' GPU costs, and usage from the rollups.

``read_work``: each hour's usage per deployment and team (the rollups' fourth level,
``key_id = ALL_MODELS``: one row per hour, deployment and team, summed over keys, models and
adapters — an index range, nothing left to group): what the report by hour reads.
``RollupSource``: what the report by period or by day reads (``metering.chargeback_runs``) —
each hour's totals over all teams (the third level, ``ALL_TEAMS``: a few rows per hour,
summed and turned into epoch seconds by the database, so Python gets plain numbers), a
team's sums over a range (day rows for its whole days, hour rows at its ends), and the rows
per team of given hours (the fourth level again). Read through the session's Core
connection: the ORM's result handling cost more than the rows themselves.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, Text, cast, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.metering.chargeback_report import WorkRow
from inferenceops.metering.gpu_costs import GpuCostSpec, GpuSchedule
from inferenceops.store.errors import translating
from inferenceops.store.repo.catalog_specs import validated
from inferenceops.store.repo.usage_rollups import ALL_MODELS, ALL_TEAMS, floor_day
from inferenceops.store.tables_catalog import Deployment
from inferenceops.store.tables_usage import UsageRollup

_SUMS = (UsageRollup.requests, UsageRollup.prompt_tokens, UsageRollup.completion_tokens,
         UsageRollup.cached_tokens)


async def gpu_schedules(session: AsyncSession) -> dict[str, GpuSchedule]:
    """Each deployment that declares a GPU cost: its schedule, costed from ``since`` or else
    from its creation."""
    stmt = select(Deployment.name, Deployment.gpu_cost, Deployment.created_at).where(
        Deployment.gpu_cost.is_not(None))
    with translating("reading deployments"):
        rows = (await session.execute(stmt)).all()
    return {name: validated(GpuCostSpec, cost, f"stored deployment {name!r}").schedule(created)
            for name, cost, created in rows}


async def read_work(session: AsyncSession, start: datetime, end: datetime,
                    deployments: Collection[str]) -> list[WorkRow]:
    if not deployments:
        return []
    u = UsageRollup
    # The bucket as the driver gives it (SQLite: text; PostgreSQL: an aware datetime), turned
    # into a time once per distinct hour rather than once per row.
    stmt = (select(type_coerce(u.bucket, Text), u.deployment, u.team_id, *_SUMS)
            .where(u.granularity == "hour", u.key_id == ALL_MODELS, u.bucket >= start,
                   u.bucket < end, u.deployment.in_(sorted(deployments))))
    hours: dict[Any, datetime] = {}
    out = []
    for raw, deployment, team, requests, prompt, completion, cached in await _rows(session, stmt):
        if deployment is None:  # never: the filter names deployments
            continue
        hour = hours.get(raw)
        if hour is None:
            hour = hours[raw] = _as_utc(raw)
        out.append(WorkRow(hour, deployment, team, requests, prompt, completion, cached))
    return out


async def _rows(session: AsyncSession, stmt: Any) -> Sequence[Any]:
    """The rows of a Core ``stmt`` through the session's connection (its transaction)."""
    with translating("reading usage rollups"):
        return (await (await session.connection()).execute(stmt)).all()


def _as_utc(value: str | datetime) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


#: Past this many single hours, one range read (filtered here) is cheaper than a long IN list.
_MANY_HOURS = 96


class RollupSource:
    """``metering.chargeback_runs.WorkSource`` over the rollups, in the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _rows(self, stmt: Any) -> Sequence[Any]:
        return await _rows(self._session, stmt)

    async def hour_sums(self, start: datetime, end: datetime, deployments: Sequence[str]
                        ) -> list[tuple[str, float, int, int, int]]:
        u = UsageRollup
        epoch = (func.extract("epoch", u.bucket)
                 if self._session.get_bind().dialect.name == "postgresql"
                 else cast(func.strftime("%s", u.bucket), Integer))
        stmt = (select(u.deployment, epoch, func.sum(u.prompt_tokens),
                       func.sum(u.completion_tokens), func.sum(u.cached_tokens))
                .where(u.granularity == "hour", u.key_id == ALL_TEAMS,
                       u.deployment.in_(sorted(deployments)), u.bucket >= start, u.bucket < end)
                .group_by(u.deployment, u.bucket))
        return [(name, float(at), int(prompt), int(completion), int(cached))
                for name, at, prompt, completion, cached in await self._rows(stmt)]

    async def team_totals(self, start: datetime, end: datetime,
                          deployments: Sequence[str]) -> list[WorkRow]:
        first_day = floor_day(start)
        if first_day < start:
            first_day += timedelta(days=1)
        last_day = floor_day(end)
        parts = ([("hour", start, end)] if first_day >= last_day else
                 [("hour", start, first_day), ("day", first_day, last_day), ("hour", last_day, end)])
        sums: dict[tuple[str, str | None], list[int]] = {}
        u = UsageRollup
        for granularity, since, until in parts:
            if since >= until:
                continue
            stmt = (select(u.deployment, u.team_id, *(func.sum(c) for c in _SUMS))
                    .where(u.granularity == granularity, u.key_id == ALL_MODELS,
                           u.deployment.in_(sorted(deployments)), u.bucket >= since,
                           u.bucket < until)
                    .group_by(u.deployment, u.team_id))
            for name, team, *values in await self._rows(stmt):
                into = sums.setdefault((name, team), [0, 0, 0, 0])
                for i, value in enumerate(values):
                    into[i] += int(value)
        return [WorkRow(start, name, team, *values) for (name, team), values in sums.items()]

    async def team_days(self, start: datetime, end: datetime,
                        deployments: Sequence[str]) -> list[WorkRow]:
        u = UsageRollup
        stmt = (select(u.deployment, type_coerce(u.bucket, Text), u.team_id, *_SUMS)
                .where(u.granularity == "day", u.key_id == ALL_MODELS,
                       u.deployment.in_(sorted(deployments)), u.bucket >= start, u.bucket < end))
        seen: dict[Any, datetime] = {}
        return [WorkRow(_hour(seen, raw), name, team, *sums)
                for name, raw, team, *sums in await self._rows(stmt)]

    async def team_hours(self, hours: Sequence[datetime], deployment: str) -> list[WorkRow]:
        if not hours:
            return []
        if len(hours) > _MANY_HOURS:
            wanted = set(hours)
            rows = await read_work(self._session, min(hours), max(hours) + timedelta(hours=1),
                                   [deployment])
            return [row for row in rows if row.hour in wanted]
        u = UsageRollup
        stmt = (select(type_coerce(u.bucket, Text), u.team_id, *_SUMS)
                .where(u.granularity == "hour", u.key_id == ALL_MODELS, u.deployment == deployment,
                       u.bucket.in_(list(hours))))
        seen: dict[Any, datetime] = {}
        return [WorkRow(_hour(seen, raw), deployment, team, *sums)
                for raw, team, *sums in await self._rows(stmt)]


def _hour(seen: dict[Any, datetime], raw: Any) -> datetime:
    hour = seen.get(raw)
    if hour is None:
        hour = seen[raw] = _as_utc(raw)
    return hour
