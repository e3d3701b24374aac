"""What the chargeback report reads: the deployments' GPU costs, and each hour's usage per
deployment and team from the rollups.

Only the hourly rows summed over all keys (``key_id = ALL_KEYS``), grouped again by
(hour, deployment, team) — they are kept per model and adapter too — within ``[start, end)``
and the named deployments: one index range (``granularity, bucket``), a few rows per hour.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, select
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
    stmt = (select(u.bucket, u.deployment, u.team_id, func.sum(u.requests),
                   func.sum(u.prompt_tokens), func.sum(u.completion_tokens),
                   func.sum(u.cached_tokens))
            .where(u.granularity == "hour", u.key_id == ALL_KEYS, u.bucket >= start,
                   u.bucket < end, u.deployment.in_(sorted(deployments)))
            .group_by(u.bucket, u.deployment, u.team_id))
    with translating("reading usage rollups"):
        rows = (await session.execute(stmt)).all()
    return [WorkRow(bucket, deployment, team, int(requests), int(prompt), int(completion),
                    int(cached))
            for bucket, deployment, team, requests, prompt, completion, cached in rows
            if deployment is not None]
