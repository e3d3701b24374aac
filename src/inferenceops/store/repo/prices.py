"""A model's price history, entry by entry: list it, schedule a price, delete one still to come.

What the admin API's ``/models/{id}/prices`` routes do to the store (the platform file and
``PATCH /models/{id}`` change a schedule as a whole: ``catalog.update_model``). History is
kept: a price is scheduled from now or later — never in the past — and only a price that
has not started yet can be deleted (``Conflict``: "history"). One price per (model,
deployment, start): another is a ``Conflict``. Writes hold the catalog lock and bump the
revision, so every replica's snapshot prices by the new schedule within a second.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.metering.prices import Entry, PriceSpec
from inferenceops.store.errors import Conflict, Invalid, NotFound
from inferenceops.store.records import PriceRecord
from inferenceops.store.repo._common import bump_revision
from inferenceops.store.repo._schedule import delete_entries, insert_entries, load_schedules
from inferenceops.store.repo.catalog_rows import lock_catalog
from inferenceops.store.repo.catalog_specs import schedule_order
from inferenceops.store.tables import utcnow
from inferenceops.store.tables_catalog import Model, ModelPrice


async def _model(session: AsyncSession, model_id: str) -> Model:
    row = await session.get(Model, model_id)
    if row is None:
        raise NotFound(f"no model with id {model_id!r}")
    return row


async def list_prices(session: AsyncSession, model_id: str) -> tuple[PriceRecord, ...]:
    """The model's whole schedule: its own prices first, then per deployment, each by start."""
    await _model(session, model_id)
    return tuple(sorted((await load_schedules(session, [model_id])).get(model_id, ()),
                        key=schedule_order))


async def add_price(session: AsyncSession, model_id: str, price: PriceSpec, *,
                    effective_from: datetime | None = None, deployment: str | None = None,
                    now: datetime | None = None) -> PriceRecord:
    """Schedule ``price`` for the model (or for the requests ``deployment`` serves) from
    ``effective_from`` — now when None, never earlier than now: what has started is history."""
    now = now or utcnow()
    start = now if effective_from is None else effective_from
    if start < now:
        raise Invalid(f"effective_from {start.isoformat()} is in the past; prices change from now "
                      "on (leave it out for now, or give a later time)", field="effective_from")
    await lock_catalog(session)
    model = await _model(session, model_id)
    taken = [p for p in (await load_schedules(session, [model_id])).get(model_id, [])
             if p.deployment == deployment and p.effective_from == start]
    if taken:
        scope = f"deployment {deployment!r}" if deployment else "the model"
        raise Conflict(f"model {model.name!r} already has a price for {scope} from "
                       f"{start.isoformat()} ({taken[0].id}); delete it first or pick another time")
    (added,) = await insert_entries(session, model.id, model.name, [Entry(deployment, start, price)])
    await bump_revision(session)
    return added


async def delete_price(session: AsyncSession, model_id: str, price_id: str, *,
                       now: datetime | None = None) -> PriceRecord:
    """Delete a price that has not started yet (``Conflict`` for one that has: it is history)."""
    now = now or utcnow()
    await lock_catalog(session)
    model = await _model(session, model_id)
    row = (await session.execute(select(ModelPrice).where(
        ModelPrice.id == price_id, ModelPrice.model_id == model.id))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"model {model.name!r} has no price with id {price_id!r}")
    (record,) = [p for p in (await load_schedules(session, [model.id]))[model.id] if p.id == row.id]
    if record.effective_from is None or record.effective_from <= now:
        since = "the beginning" if record.effective_from is None else record.effective_from.isoformat()
        raise Conflict(f"price {price_id!r} of model {model.name!r} has applied since {since}; "
                       "prices that have started are history and stay (schedule a new price "
                       "instead)")
    await delete_entries(session, [row.id])
    await bump_revision(session)
    return record
