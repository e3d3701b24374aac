"""A model's price schedule in ``model_prices``: read, written whole, synced. The callers lock.

Used by the catalog's model functions (``catalog``: a model is created with its schedule as
written, and an update syncs the stored schedule to the spec's *view* from now on, never
rewriting what has started — ``metering.prices.plan_sync``) and by the price routes'
repository (``prices``). Entries name deployments by name in specs and by id in rows.
No locking here and no revision bump: the caller holds the catalog lock and bumps.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.config.spec.models import ModelSpec
from inferenceops.metering.prices import Entry, plan_sync
from inferenceops.store import ids
from inferenceops.store.errors import Invalid, NotFound, translating
from inferenceops.store.records import PriceRecord
from inferenceops.store.repo.catalog_specs import price_columns, price_entry, price_record
from inferenceops.store.tables_catalog import Deployment, ModelPrice


async def load_schedules(session: AsyncSession,
                         model_ids: Collection[str] | None = None) -> dict[str, list[PriceRecord]]:
    """Every stored entry by model id (of ``model_ids``; None: of every model)."""
    stmt = select(ModelPrice)
    if model_ids is not None:
        if not model_ids:
            return {}
        stmt = stmt.where(ModelPrice.model_id.in_(sorted(model_ids)))
    rows = (await session.execute(stmt)).scalars().all()
    wanted = {r.deployment_id for r in rows if r.deployment_id is not None}
    names = {} if not wanted else {row.id: row.name for row in await session.execute(
        select(Deployment.id, Deployment.name).where(Deployment.id.in_(sorted(wanted))))}
    found: dict[str, list[PriceRecord]] = {}
    for row in rows:
        found.setdefault(row.model_id, []).append(
            price_record(row, None if row.deployment_id is None else names[row.deployment_id]))
    return found


def check_schedule(spec: ModelSpec) -> None:
    """``Invalid`` naming the field of the first price that starts when another of its scope does."""
    problems = spec.price_problems()
    if problems:
        where, message = problems[0]
        raise Invalid(f"model {spec.name!r}: {message}", field=".".join(str(p) for p in where))


async def deployment_ids(session: AsyncSession, names: Iterable[str | None],
                         model: str) -> dict[str | None, str | None]:
    """Deployment name → id for the names prices use; ``NotFound`` naming a missing one."""
    wanted = sorted({n for n in names if n is not None})
    found: dict[str | None, str | None] = {None: None}
    if wanted:
        found.update({row.name: row.id for row in await session.execute(
            select(Deployment.id, Deployment.name).where(Deployment.name.in_(wanted)))})
    for name in wanted:
        if name not in found:
            raise NotFound(f"model {model!r} has a price for deployment {name!r}, which does not exist")
    return found


async def insert_entries(session: AsyncSession, model_id: str, model: str,
                         entries: Sequence[Entry]) -> list[PriceRecord]:
    """Add ``entries`` to the model's schedule (checked for clashes by the caller)."""
    by_name = await deployment_ids(session, (e.deployment for e in entries), model)
    rows = [ModelPrice(id=ids.new_id(ids.PRICE), model_id=model_id,
                       **price_columns(e, by_name[e.deployment])) for e in entries]
    with translating(f"storing the prices of model {model!r}"):
        session.add_all(rows)
        await session.flush()
    return [price_record(row, e.deployment) for row, e in zip(rows, entries, strict=True)]


async def delete_entries(session: AsyncSession, entry_ids: Collection[str]) -> None:
    if entry_ids:
        await session.execute(delete(ModelPrice).where(ModelPrice.id.in_(sorted(entry_ids))))


async def sync_schedule(session: AsyncSession, model_id: str, spec: ModelSpec, now: datetime) -> bool:
    """Make the stored schedule charge what ``spec``'s does from ``now`` on; True if it changed."""
    check_schedule(spec)
    stored = (await load_schedules(session, [model_id])).get(model_id, [])
    drop, add = plan_sync([(r.id, price_entry(r)) for r in stored], spec.price_entries(), now)
    await delete_entries(session, drop)
    await insert_entries(session, model_id, spec.name, add)
    return bool(drop or add)
