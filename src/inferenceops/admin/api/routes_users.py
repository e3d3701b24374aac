"""Routes: ``/users``. Thin: parse → authorize → service → schema."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from inferenceops.admin.api import link_service, services
from inferenceops.admin.api import schemas as s
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


@router.get("/users/{user_id}/sign-in-links", response_model=list[s.SignInLinkOut])
async def list_sign_in_links(user_id: str, ctx: Context,
                             access: Annotated[Access, Depends(require("users:read"))]
                             ) -> list[s.SignInLinkOut]:
    """The OIDC / auth-proxy identities that sign in as this user."""
    return await link_service.list_links(ctx, access, user_id)


@router.post("/users/{user_id}/sign-in-links", status_code=201, response_model=s.SignInLinkOut)
async def create_sign_in_link(user_id: str, body: s.SignInLinkCreate, ctx: Context,
                              access: Annotated[Access, Depends(require("users:write"))]
                              ) -> s.SignInLinkOut:
    """Let an identity (a token's ``iss`` and ``sub``; ``proxy`` and the proxy's user header)
    sign in as this user: the only way for a user with a platform role."""
    return await link_service.create_link(ctx, access, user_id, body)


@router.delete("/users/{user_id}/sign-in-links/{link_id}", status_code=204,
               response_class=Response)
async def delete_sign_in_link(user_id: str, link_id: str, ctx: Context,
                              access: Annotated[Access, Depends(require("users:write"))]
                              ) -> Response:
    """That identity signs in as nobody until it is linked again."""
    await link_service.delete_link(ctx, access, user_id, link_id)
    return Response(status_code=204)
