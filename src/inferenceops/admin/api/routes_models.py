"""Routes: ``/models`` (the catalog's models) and ``/models/{id}/prices`` (each model's price
schedule). Thin: parse → authorize → service → schema.

Bodies are the platform YAML's model spec as JSON; ``deployment`` names a deployment. Team
roles see the models granted to their teams (and their prices); platform admins change them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from inferenceops.admin.api import catalog_schemas as c
from inferenceops.admin.api import catalog_service as service
from inferenceops.admin.api import schemas as s
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, require

router = APIRouter(tags=["models"])
Read = Annotated[Access, Depends(require("catalog:read"))]
Write = Annotated[Access, Depends(require("catalog:write"))]


@router.get("/models", response_model=s.Page[c.ModelOut])
async def list_models(
    ctx: Context, access: Read, name: str | None = None, deployment: str | None = None,
    model_type: Annotated[Literal["chat", "embedding"] | None, Query(alias="type")] = None,
    managed_by: str | None = None, limit: Limit = DEFAULT_LIMIT, after: After = None,
) -> s.Page[c.ModelOut]:
    """Models by name: all of them for platform roles, the ones granted to your teams otherwise."""
    return await service.list_models(ctx, access, name=name, deployment=deployment,
                                     model_type=model_type, managed_by=managed_by, limit=limit,
                                     after=after)


@router.post("/models", status_code=201, response_model=c.ModelOut)
async def create_model(body: c.ModelCreate, ctx: Context, access: Write) -> c.ModelOut:
    """A model as in the platform YAML; its name and aliases must be free across all models."""
    return await service.create_model(ctx, access, body)


@router.get("/models/{model_id}", response_model=c.ModelOut)
async def get_model(model_id: str, ctx: Context, access: Read) -> c.ModelOut:
    return await service.get_model(ctx, access, model_id)


@router.patch("/models/{model_id}", response_model=c.ModelOut)
async def update_model(model_id: str, body: c.ModelPatch, ctx: Context, access: Write) -> c.ModelOut:
    """Change the fields sent. Grants and limits name models by name: a rename leaves them behind."""
    return await service.update_model(ctx, access, model_id, body)


@router.delete("/models/{model_id}", status_code=204, response_class=Response)
async def delete_model(model_id: str, ctx: Context, access: Write) -> Response:
    await service.delete_model(ctx, access, model_id)
    return Response(status_code=204)


@router.get("/models/{model_id}/prices", response_model=s.Page[c.PriceOut])
async def list_prices(model_id: str, ctx: Context, access: Read) -> s.Page[c.PriceOut]:
    """The model's whole price schedule, history included: its own prices first, then each
    deployment's, each by start, with what is in force now. One page (``next_after`` null)."""
    return await service.list_prices(ctx, access, model_id)


@router.post("/models/{model_id}/prices", status_code=201, response_model=c.PriceOut)
async def add_price(model_id: str, body: c.PriceCreate, ctx: Context, access: Write) -> c.PriceOut:
    """Schedule a price from ``effective_from`` (now when left out; never in the past). 409 when
    one of the same scope starts at that time, 404 for an unknown deployment."""
    return await service.add_price(ctx, access, model_id, body)


@router.delete("/models/{model_id}/prices/{price_id}", status_code=204, response_class=Response)
async def delete_price(model_id: str, price_id: str, ctx: Context, access: Write) -> Response:
    """Delete a price still to come; one that has started is history (409)."""
    await service.delete_price(ctx, access, model_id, price_id)
    return Response(status_code=204)
