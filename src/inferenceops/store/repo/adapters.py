"""LoRA adapters in the catalog: create, read, list, update, delete.

What an adapter *is* is ``config.spec.adapters.AdapterSpec``: every write is validated by
building that spec, so the store takes exactly what the platform file takes. What the spec
alone cannot tell is checked here, under the catalog lock (``catalog_rows.lock_catalog``):

* its name is unique among adapters, and is no model's name or alias (``Conflict``);
* its ``base_model`` is a model's name (``Invalid`` naming ``base_model``: a bad reference
  in the body, as the platform file reports it — not a missing resource of the URL);
* the base model is stored by id, so renaming the model carries the adapter along, and the
  model cannot be deleted while the adapter exists (``adapter_refs.refuse_if_adapted``).

Every change bumps the revision (the snapshot serves adapters). Grants name adapters by
name, exactly like models (``repo.grants``): deleting an adapter leaves its grants, which
apply again to an adapter of that name, as a model's do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.config.spec.adapters import AdapterSpec
from inferenceops.store import ids
from inferenceops.store.errors import Conflict, Invalid, NotFound, translating
from inferenceops.store.records import AdapterRecord, Page
from inferenceops.store.repo._common import bump_revision, page
from inferenceops.store.repo.adapter_refs import adapter_record
from inferenceops.store.repo.catalog_rows import UNCHANGED, ManagedBy, lock_catalog
from inferenceops.store.repo.catalog_specs import validated
from inferenceops.store.tables_adapters import Adapter
from inferenceops.store.tables_catalog import Model


def adapter_spec(r: AdapterRecord) -> AdapterSpec:
    return validated(AdapterSpec, {"name": r.name, "base_model": r.base_model, "source": r.source,
                                   "description": r.description}, f"stored adapter {r.name!r}")


async def _base_model_id(session: AsyncSession, spec: AdapterSpec) -> str:
    found = (await session.execute(select(Model.id).where(Model.name == spec.base_model))
             ).scalar_one_or_none()
    if found is None:
        raise Invalid(f"adapter {spec.name!r} names base model {spec.base_model!r}, which is not "
                      "a model (use its name, not an alias)", field="base_model")
    return str(found)


async def _check_name_free(session: AsyncSession, name: str, adapter_id: str | None) -> None:
    stmt = select(Adapter.id).where(Adapter.name == name)
    if adapter_id is not None:
        stmt = stmt.where(Adapter.id != adapter_id)
    if (await session.execute(stmt)).first() is not None:
        raise Conflict(f"an adapter named {name!r} already exists")
    for model, aliases in await session.execute(select(Model.name, Model.aliases)):
        if name == model or name in aliases:
            raise Conflict(f"adapter name {name!r} is already the name or an alias of model "
                           f"{model!r}")


async def _record(session: AsyncSession, row: Adapter) -> AdapterRecord:
    base = (await session.execute(select(Model.name).where(Model.id == row.model_id))).scalar_one()
    return adapter_record(row, base)


async def _row(session: AsyncSession, adapter_id: str) -> Adapter:
    row = await session.get(Adapter, adapter_id)
    if row is None:
        raise NotFound(f"no adapter with id {adapter_id!r}")
    return row


async def create_adapter(session: AsyncSession, spec: AdapterSpec | Mapping[str, Any], *,
                         managed_by: str | None = None) -> AdapterRecord:
    spec = validated(AdapterSpec, spec, "an adapter")
    await lock_catalog(session)
    await _check_name_free(session, spec.name, None)
    row = Adapter(id=ids.new_id(ids.ADAPTER), name=spec.name,
                  model_id=await _base_model_id(session, spec), source=spec.source,
                  description=spec.description, managed_by=managed_by)
    with translating(f"creating adapter {spec.name!r}"):
        session.add(row)
        await session.flush()
    await bump_revision(session)
    return adapter_record(row, spec.base_model)


async def get_adapter(session: AsyncSession, adapter_id: str) -> AdapterRecord:
    return await _record(session, await _row(session, adapter_id))


async def get_adapter_by_name(session: AsyncSession, name: str) -> AdapterRecord:
    row = (await session.execute(select(Adapter).where(Adapter.name == name))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no adapter named {name!r}")
    return await _record(session, row)


async def list_adapters(session: AsyncSession, *, base_model: str | None = None,
                        managed_by: str | None = None, limit: int = 100,
                        after: str | None = None) -> Page[AdapterRecord]:
    """Adapters by name; ``base_model``: only those on this model (by its name)."""
    stmt = select(Adapter)
    if base_model is not None:
        stmt = stmt.join(Model, Model.id == Adapter.model_id).where(Model.name == base_model)
    if managed_by is not None:
        stmt = stmt.where(Adapter.managed_by == managed_by)
    rows = await page(session, stmt, Adapter.name, after, limit, lambda r: r, lambda r: r.name)
    return Page(tuple([await _record(session, r) for r in rows.items]), rows.next_after)


async def update_adapter(session: AsyncSession, adapter_id: str, changes: Mapping[str, Any], *,
                         managed_by: ManagedBy = UNCHANGED) -> AdapterRecord:
    """Change the given ``AdapterSpec`` fields (validated whole, like a model's)."""
    await lock_catalog(session)
    row = await _row(session, adapter_id)
    if not isinstance(changes, Mapping):
        raise Invalid(f"adapter {row.name!r}: changes must be an object of AdapterSpec fields")
    current = adapter_spec(await _record(session, row))
    spec = validated(AdapterSpec, {**current.model_dump(), **changes}, f"adapter {row.name!r}")
    await _check_name_free(session, spec.name, row.id)
    columns: dict[str, Any] = {"name": spec.name, "model_id": await _base_model_id(session, spec),
                               "source": spec.source, "description": spec.description}
    if managed_by is not UNCHANGED:
        columns["managed_by"] = managed_by
    changed = {k: v for k, v in columns.items() if getattr(row, k) != v}
    if changed:
        for name, value in changed.items():
            setattr(row, name, value)
        with translating(f"updating adapter {row.name!r}"):
            await session.flush()
        await bump_revision(session)
    return await _record(session, row)


async def delete_adapter(session: AsyncSession, adapter_id: str) -> None:
    await lock_catalog(session)
    row = await _row(session, adapter_id)
    with translating(f"deleting adapter {row.name!r}"):
        await session.delete(row)
        await session.flush()
    await bump_revision(session)
