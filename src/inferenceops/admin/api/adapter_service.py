"""Admin services for LoRA adapters: the catalog's rules (``catalog_service``), for adapters.

Platform roles with ``catalog:read`` see every adapter; a team role sees the adapters granted
to its teams (an adapter's name is granted like a model's: ``PUT /grants/{team}/{adapter}``),
any other is a 404 as if it did not exist. Only platform admins create, change or delete one
(``catalog:write``), each change audited (``adapter.create`` / ``.update`` / ``.delete``) in
the same transaction. An unknown base model is a 400 naming ``base_model`` (the store's
``Invalid``); deleting a model that adapters name is refused by the store (409 naming them).
"""

from __future__ import annotations

from inferenceops.admin.api import catalog_schemas as c
from inferenceops.admin.api import schemas as s
from inferenceops.admin.api.catalog_service import granted_names
from inferenceops.admin.api.deps import Access, AdminContext
from inferenceops.admin.api.services import audit, page_of
from inferenceops.errors import NotFound
from inferenceops.store import repo


async def list_adapters(ctx: AdminContext, access: Access, *, base_model: str | None,
                        managed_by: str | None, limit: int, after: str | None) -> s.Page[c.AdapterOut]:
    async with ctx.db.read() as tx:
        found = await repo.list_adapters(tx, base_model=base_model, managed_by=managed_by,
                                         limit=limit, after=after)
        if not access.everywhere:
            names = await granted_names(tx, access)
            found = type(found)(tuple(a for a in found.items if a.name in names), found.next_after)
    return page_of(found, c.AdapterOut.of)


async def get_adapter(ctx: AdminContext, access: Access, adapter_id: str) -> c.AdapterOut:
    async with ctx.db.read() as tx:
        adapter = await repo.get_adapter(tx, adapter_id)
        if not access.everywhere and adapter.name not in await granted_names(tx, access):
            raise NotFound(f"No adapter {adapter_id!r}")
    return c.AdapterOut.of(adapter)


async def create_adapter(ctx: AdminContext, access: Access, body: c.AdapterCreate) -> c.AdapterOut:
    access.check(None, "the catalog")
    async with ctx.db.transaction("creating an adapter") as tx:
        out = c.AdapterOut.of(await repo.create_adapter(tx, body))
        await audit(tx, access.principal, "adapter.create", "adapter", out.id, after=out)
    return out


async def update_adapter(ctx: AdminContext, access: Access, adapter_id: str,
                         body: c.AdapterPatch) -> c.AdapterOut:
    access.check(None, f"adapter {adapter_id!r}")
    async with ctx.db.transaction("updating an adapter") as tx:
        before = c.AdapterOut.of(await repo.get_adapter(tx, adapter_id))
        out = c.AdapterOut.of(await repo.update_adapter(tx, adapter_id, body.changes()))
        await audit(tx, access.principal, "adapter.update", "adapter", adapter_id,
                    before=before, after=out)
    return out


async def delete_adapter(ctx: AdminContext, access: Access, adapter_id: str) -> None:
    access.check(None, f"adapter {adapter_id!r}")
    async with ctx.db.transaction("deleting an adapter") as tx:
        before = c.AdapterOut.of(await repo.get_adapter(tx, adapter_id))
        await repo.delete_adapter(tx, adapter_id)
        await audit(tx, access.principal, "adapter.delete", "adapter", adapter_id, before=before)
