"""Routes: ``/providers`` and ``/providers/{id}/api-key``. Thin: parse → authorize → service → schema.

A provider's API key is write-only: sent on create or with ``PUT .../api-key``, removed with
``DELETE .../api-key``, never returned (responses say ``has_api_key``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response

from inferenceops.admin.api import catalog_schemas as c
from inferenceops.admin.api import catalog_service as service
from inferenceops.admin.api import schemas as s
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, require

router = APIRouter(tags=["providers"])
Read = Annotated[Access, Depends(require("catalog:read"))]
Write = Annotated[Access, Depends(require("catalog:write"))]


@router.get("/providers", response_model=s.Page[c.ProviderOut])
async def list_providers(ctx: Context, access: Read, name: str | None = None,
                         dialect: Literal["openai"] | None = None, managed_by: str | None = None,
                         limit: Limit = DEFAULT_LIMIT, after: After = None) -> s.Page[c.ProviderOut]:
    """Providers by name (platform roles only)."""
    return await service.list_providers(ctx, access, name=name, dialect=dialect,
                                        managed_by=managed_by, limit=limit, after=after)


@router.post("/providers", status_code=201, response_model=c.ProviderOut)
async def create_provider(body: c.ProviderCreate, ctx: Context, access: Write) -> c.ProviderOut:
    """A provider as in the platform YAML; ``api_key`` (optional) is stored encrypted."""
    return await service.create_provider(ctx, access, body)


@router.get("/providers/{provider_id}", response_model=c.ProviderOut)
async def get_provider(provider_id: str, ctx: Context, access: Read) -> c.ProviderOut:
    return await service.get_provider(ctx, access, provider_id)


@router.patch("/providers/{provider_id}", response_model=c.ProviderOut)
async def update_provider(provider_id: str, body: c.ProviderPatch, ctx: Context,
                          access: Write) -> c.ProviderOut:
    """Change the fields sent (the key: ``PUT .../api-key``)."""
    return await service.update_provider(ctx, access, provider_id, body)


@router.delete("/providers/{provider_id}", status_code=204, response_class=Response)
async def delete_provider(provider_id: str, ctx: Context, access: Write) -> Response:
    """Delete a provider no deployment uses (409 naming those that do)."""
    await service.delete_provider(ctx, access, provider_id)
    return Response(status_code=204)


@router.put("/providers/{provider_id}/api-key", response_model=c.ProviderOut)
async def set_provider_key(provider_id: str, body: c.ProviderKeySet, ctx: Context,
                           access: Write) -> c.ProviderOut:
    """Store (or replace) the provider's API key, encrypted; it is never returned."""
    return await service.set_provider_key(ctx, access, provider_id, body)


@router.delete("/providers/{provider_id}/api-key", status_code=204, response_class=Response)
async def clear_provider_key(provider_id: str, ctx: Context, access: Write) -> Response:
    """Forget the provider's API key (404 if it has none)."""
    await service.clear_provider_key(ctx, access, provider_id)
    return Response(status_code=204)
