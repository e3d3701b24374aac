"""Routes: ``/adapters`` (LoRA adapters on the catalog's models). Thin: parse → authorize →
service → schema.

Bodies are the platform file's adapter spec as JSON; ``base_model`` names a model. Team roles
see the adapters granted to their teams; platform admins change them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from inferenceops.admin.api import adapter_service as service
from inferenceops.admin.api import catalog_schemas as c
from inferenceops.admin.api import schemas as s
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, require

router = APIRouter(tags=["adapters"])
Read = Annotated[Access, Depends(require("catalog:read"))]
Write = Annotated[Access, Depends(require("catalog:write"))]


@router.get("/adapters", response_model=s.Page[c.AdapterOut])
async def list_adapters(ctx: Context, access: Read, base_model: str | None = None,
                        managed_by: str | None = None, limit: Limit = DEFAULT_LIMIT,
                        after: After = None) -> s.Page[c.AdapterOut]:
    """Adapters by name: all of them for platform roles, the ones granted to your teams otherwise."""
    return await service.list_adapters(ctx, access, base_model=base_model, managed_by=managed_by,
                                       limit=limit, after=after)


@router.post("/adapters", status_code=201, response_model=c.AdapterOut)
async def create_adapter(body: c.AdapterCreate, ctx: Context, access: Write) -> c.AdapterOut:
    """An adapter as in the platform file; its base model must be a model (by name), its name
    free among models, aliases and adapters."""
    return await service.create_adapter(ctx, access, body)


@router.get("/adapters/{adapter_id}", response_model=c.AdapterOut)
async def get_adapter(adapter_id: str, ctx: Context, access: Read) -> c.AdapterOut:
    return await service.get_adapter(ctx, access, adapter_id)


@router.patch("/adapters/{adapter_id}", response_model=c.AdapterOut)
async def update_adapter(adapter_id: str, body: c.AdapterPatch, ctx: Context,
                         access: Write) -> c.AdapterOut:
    """Change the fields sent. Grants name adapters by name: a rename leaves them behind."""
    return await service.update_adapter(ctx, access, adapter_id, body)


@router.delete("/adapters/{adapter_id}", status_code=204, response_class=Response)
async def delete_adapter(adapter_id: str, ctx: Context, access: Write) -> Response:
    await service.delete_adapter(ctx, access, adapter_id)
    return Response(status_code=204)
