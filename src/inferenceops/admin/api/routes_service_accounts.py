"""Routes: ``/service-accounts``. Thin: parse → authorize → service → schema."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from inferenceops.admin.api import schemas as s
from inferenceops.admin.api import services
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, require

router = APIRouter(tags=["service accounts"])


@router.get("/service-accounts", response_model=s.Page[s.ServiceAccountOut])
async def list_service_accounts(
    ctx: Context, access: Annotated[Access, Depends(require("service_accounts:read"))],
    team_id: str | None = None, limit: Limit = DEFAULT_LIMIT, after: After = None,
) -> s.Page[s.ServiceAccountOut]:
    return await services.list_service_accounts(ctx, access, team_id, limit=limit, after=after)


@router.post("/service-accounts", status_code=201, response_model=s.ServiceAccountOut)
async def create_service_account(
    body: s.ServiceAccountCreate, ctx: Context,
    access: Annotated[Access, Depends(require("service_accounts:write"))],
) -> s.ServiceAccountOut:
    return await services.create_service_account(ctx, access, body)


@router.get("/service-accounts/{account_id}", response_model=s.ServiceAccountOut)
async def get_service_account(
    account_id: str, ctx: Context, access: Annotated[Access, Depends(require("service_accounts:read"))],
) -> s.ServiceAccountOut:
    return await services.get_service_account(ctx, access, account_id)
