"""Drained replicas: which replicas of which deployment take no new work.

A replica is named by its id as the catalog builds it (``<deployment>-<i>``, ``i`` its
place in the deployment's list, or its number among a simulator's replicas); draining
one that the deployment does not have is ``NotFound`` naming it. Every change bumps the
revision, so every worker's snapshot feed rebuilds and its router passes the replica
over (``routing.health``). No request path reads this: the snapshot carries it.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import NotFound
from inferenceops.store.records import DeploymentRecord
from inferenceops.store.repo._common import bump_revision
from inferenceops.store.repo.catalog_rows import lock_catalog
from inferenceops.store.tables_catalog import Deployment
from inferenceops.store.tables_drain import ReplicaDrain


def replica_ids(record: DeploymentRecord) -> tuple[str, ...]:
    """The ids the catalog gives the deployment's replicas (``config.spec.build_platform``)."""
    replicas = record.replicas
    count = replicas if isinstance(replicas, int) else len(replicas) if replicas else 1
    return tuple(f"{record.name}-{i}" for i in range(count))


async def drained(session: AsyncSession, deployment_id: str) -> tuple[str, ...]:
    rows = await session.execute(select(ReplicaDrain.replica)
                                 .where(ReplicaDrain.deployment_id == deployment_id)
                                 .order_by(ReplicaDrain.replica))
    return tuple(rows.scalars())


async def all_drained(session: AsyncSession) -> dict[str, frozenset[str]]:
    """Deployment name → its drained replica ids (for the snapshot)."""
    rows = await session.execute(select(Deployment.name, ReplicaDrain.replica)
                                 .join(Deployment, Deployment.id == ReplicaDrain.deployment_id))
    out: dict[str, set[str]] = {}
    for name, replica in rows:
        out.setdefault(name, set()).add(replica)
    return {name: frozenset(ids) for name, ids in out.items()}


async def set_drained(session: AsyncSession, record: DeploymentRecord, replica: str,
                      drain: bool, *, by: str | None = None) -> tuple[str, ...]:
    """Drain (or undrain) one replica; the deployment's drained replicas afterwards.

    Idempotent: draining a drained replica changes nothing (and bumps nothing).
    """
    if replica not in replica_ids(record):
        raise NotFound(f"deployment {record.name!r} has no replica {replica!r} (its replicas: "
                       f"{', '.join(replica_ids(record))})")
    await lock_catalog(session)
    before = await drained(session, record.id)
    if drain and replica not in before:
        session.add(ReplicaDrain(deployment_id=record.id, replica=replica, drained_by=by))
        await session.flush()
        await bump_revision(session)
    elif not drain and replica in before:
        await session.execute(delete(ReplicaDrain).where(
            ReplicaDrain.deployment_id == record.id, ReplicaDrain.replica == replica))
        await bump_revision(session)
    return await drained(session, record.id)
