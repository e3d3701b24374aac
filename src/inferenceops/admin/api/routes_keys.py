"""Routes: ``/keys``. Thin: parse → authorize → service → schema. Secrets appear only in 201s."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from inferenceops.admin.api import key_service
from inferenceops.admin.api import schemas as s
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, require

router = APIRouter(tags=["keys"])


@router.get("/keys", response_model=s.Page[s.KeyOut])
async def list_keys(
    ctx: Context, access: Annotated[Access, Depends(require("keys:read"))],
    team_id: str | None = None, user_id: str | None = None, service_account_id: str | None = None,
    include_revoked: bool = False, limit: Limit = DEFAULT_LIMIT, after: After = None,
) -> s.Page[s.KeyOut]:
    """Keys by id. Without platform roles: a team's keys with ``team_id`` (owners), else your own."""
    return await key_service.list_keys(ctx, access, team_id=team_id, user_id=user_id,
                                       service_account_id=service_account_id,
                                       include_revoked=include_revoked, limit=limit, after=after)


@router.post("/keys", status_code=201, response_model=s.KeyCreated)
async def create_key(body: s.KeyCreate, ctx: Context,
                     access: Annotated[Access, Depends(require("keys:write"))]) -> s.KeyCreated:
    """Create a key; the response's ``secret`` is the only time the key is ever shown."""
    return await key_service.create_key(ctx, access, body)


@router.get("/keys/{key_id}", response_model=s.KeyOut)
async def get_key(key_id: str, ctx: Context,
                  access: Annotated[Access, Depends(require("keys:read"))]) -> s.KeyOut:
    return await key_service.get_key(ctx, access, key_id)


@router.post("/keys/{key_id}/revoke", response_model=s.KeyOut)
async def revoke_key(key_id: str, ctx: Context,
                     access: Annotated[Access, Depends(require("keys:write"))]) -> s.KeyOut:
    return await key_service.revoke_key(ctx, access, key_id)


@router.post("/keys/{key_id}/rotate", status_code=201, response_model=s.KeyCreated)
async def rotate_key(key_id: str, body: s.KeyRotate, ctx: Context,
                     access: Annotated[Access, Depends(require("keys:write"))]) -> s.KeyCreated:
    """A new key replacing this one; the old one keeps working for ``overlap_s`` seconds."""
    return await key_service.rotate_key(ctx, access, key_id, body)
