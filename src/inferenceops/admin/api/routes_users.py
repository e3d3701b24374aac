"""Routes: ``/users``. Thin: parse → authorize → service → schema."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from inferenceops.admin.api import schemas as s
from inferenceops.admin.api import services
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, require

router = APIRouter(tags=["users"])


@router.get("/users", response_model=s.Page[s.UserOut])
async def list_users(ctx: Context, access: Annotated[Access, Depends(require("users:read"))],
                     limit: Limit = DEFAULT_LIMIT, after: After = None) -> s.Page[s.UserOut]:
    """Users by email."""
    return await services.list_users(ctx, access, limit=limit, after=after)


@router.post("/users", status_code=201, response_model=s.UserOut)
async def create_user(body: s.UserCreate, ctx: Context,
                      access: Annotated[Access, Depends(require("users:write"))]) -> s.UserOut:
    return await services.create_user(ctx, access, body)


@router.get("/users/{user_id}", response_model=s.UserOut)
async def get_user(user_id: str, ctx: Context,
                   access: Annotated[Access, Depends(require("users:read"))]) -> s.UserOut:
    return await services.get_user(ctx, access, user_id)


@router.patch("/users/{user_id}", response_model=s.UserOut)
async def update_user(user_id: str, body: s.UserPatch, ctx: Context,
                      access: Annotated[Access, Depends(require("users:write"))]) -> s.UserOut:
    """Change a user's platform role (null removes it) and/or disable or re-enable them."""
    return await services.update_user(ctx, access, user_id, body)
