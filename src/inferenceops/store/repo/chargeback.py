"""What the chargeback report reads: the deployments' GPU costs, and each hour's usage per
deployment and team from the rollups.

Only the hourly rows summed over all keys (``key_id = ALL_KEYS``), grouped again by
(hour, deployment, team) — they are kept per model and adapter too — within ``[start, end)``
and the named deployments: one index range (``granularity, bucket``), a few rows per hour.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.metering.chargeback_report import WorkRow
from inferenceops.metering.gpu_costs import GpuCostSpec, GpuSchedule
from inferenceops.store.errors import translating
from inferenceops.store.repo.catalog_specs import validated
from inferenceops.store.repo.usage_rollups import ALL_KEYS
from inferenceops.store.tables import Deployment, UsageRollup


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
    bucket = type_coerce(u.bucket, Text)
    stmt = (select(bucket, u.deployment, u.team_id, func.sum(u.requests),
                   func.sum(u.prompt_tokens), func.sum(u.completion_tokens),
                   func.sum(u.cached_tokens))
            .where(u.granularity == "hour", u.key_id == ALL_KEYS, u.bucket >= start,
                   u.bucket < end, u.deployment.in_(sorted(deployments)))
            .group_by(u.bucket, u.deployment, u.team_id))
    with translating("reading usage rollups"):
        rows = (await session.execute(stmt)).all()
    hours: dict[Any, datetime] = {}
    out = []
    for raw, deployment, team, requests, prompt, completion, cached in rows:
        if deployment is None:  # never: the filter names deployments
            continue
        hour = hours.get(raw)
        if hour is None:
            hour = hours[raw] = _as_utc(raw)
        out.append(WorkRow(hour, deployment, team, int(requests), int(prompt), int(completion),
                           int(cached)))
    return out


def _as_utc(value: str | datetime) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
