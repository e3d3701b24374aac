"""What the model catalog must know of adapters, kept apart so ``catalog`` needs no CRUD of them.

A model's name or alias may not be an adapter's name (a request's ``model`` names one or the
other); a model may not be deleted while an adapter names it as its base (``Conflict`` naming
the adapters). And the adapters as records, for ``load_catalog``. Queries only, in the
caller's transaction (under the catalog lock for writes).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import Conflict
from inferenceops.store.records import AdapterRecord
from inferenceops.store.tables_adapters import Adapter
from inferenceops.store.tables_catalog import Model


def adapter_record(row: Adapter, base_model: str) -> AdapterRecord:
    return AdapterRecord(row.id, row.name, row.model_id, base_model, row.source,
                         row.description, row.managed_by, row.created_at, row.updated_at)


async def refuse_adapter_names(session: AsyncSession, names: Collection[str], model: str) -> None:
    """``Conflict`` if one of ``names`` (a model's name and aliases) is an adapter's name."""
    taken = (await session.execute(select(Adapter.name).where(Adapter.name.in_(sorted(names))))
             ).scalars().first()
    if taken is not None:
        raise Conflict(f"model name or alias {taken!r} of model {model!r} is already the name "
                       "of an adapter")


async def refuse_if_adapted(session: AsyncSession, model_id: str, model: str) -> None:
    """``Conflict`` naming the adapters whose base model this is."""
    names = (await session.execute(select(Adapter.name).where(Adapter.model_id == model_id)
                                   .order_by(Adapter.name))).scalars().all()
    if names:
        raise Conflict(f"cannot delete model {model!r}: adapter(s) "
                       f"{', '.join(repr(n) for n in names)} name it as their base model; "
                       "delete them first")


async def load_adapters(session: AsyncSession) -> tuple[AdapterRecord, ...]:
    """Every adapter, by name, with its base model's current name."""
    rows = await session.execute(select(Adapter, Model.name).join(Model, Model.id == Adapter.model_id)
                                 .order_by(Adapter.name))
    return tuple(adapter_record(row, name) for row, name in rows)
