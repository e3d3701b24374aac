"""Routes: ``/teams`` and ``/teams/{team_id}/members``. Thin: parse → authorize → service → schema."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from inferenceops.admin.api import schemas as s
from inferenceops.admin.api import services
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, require

router = APIRouter(tags=["teams"])


@router.get("/teams", response_model=s.Page[s.TeamOut])
async def list_teams(ctx: Context, access: Annotated[Access, Depends(require("teams:read"))],
                     limit: Limit = DEFAULT_LIMIT, after: After = None) -> s.Page[s.TeamOut]:
    """Teams by name: all of them for platform roles, the caller's own teams otherwise."""
    return await services.list_teams(ctx, access, limit=limit, after=after)


@router.post("/teams", status_code=201, response_model=s.TeamOut)
async def create_team(body: s.TeamCreate, ctx: Context,
                      access: Annotated[Access, Depends(require("teams:write"))]) -> s.TeamOut:
    return await services.create_team(ctx, access, body)


@router.get("/teams/{team_id}", response_model=s.TeamOut)
async def get_team(team_id: str, ctx: Context,
                   access: Annotated[Access, Depends(require("teams:read"))]) -> s.TeamOut:
    return await services.get_team(ctx, access, team_id)


@router.patch("/teams/{team_id}", response_model=s.TeamOut)
async def update_team(team_id: str, body: s.TeamPatch, ctx: Context,
                      access: Annotated[Access, Depends(require("teams:write"))]) -> s.TeamOut:
    """Change a team's fair-share weight (1 to 1000): its share of contended capacity."""
    return await services.update_team(ctx, access, team_id, body)


@router.delete("/teams/{team_id}", status_code=204, response_class=Response)
async def delete_team(team_id: str, ctx: Context,
                      access: Annotated[Access, Depends(require("teams:write"))]) -> Response:
    """Delete a team with its memberships, grants, service accounts and keys."""
    await services.delete_team(ctx, access, team_id)
    return Response(status_code=204)


@router.get("/teams/{team_id}/members", response_model=s.Page[s.MemberOut])
async def list_members(team_id: str, ctx: Context,
                       access: Annotated[Access, Depends(require("members:read"))],
                       limit: Limit = DEFAULT_LIMIT, after: After = None) -> s.Page[s.MemberOut]:
    return await services.list_members(ctx, access, team_id, limit=limit, after=after)


@router.post("/teams/{team_id}/members", status_code=201, response_model=s.MemberOut,
             responses={200: {"description": "The user was a member already; the role is set",
                              "model": s.MemberOut}})
async def add_member(team_id: str, body: s.MemberAdd, response: Response, ctx: Context,
                     access: Annotated[Access, Depends(require("members:write"))]) -> s.MemberOut:
    """Add a user to the team by `user_id` or `email` (201), or set a member's role (200).

    Team owners add people by email: they cannot list or read users. An unknown email is 404.
    """
    out, added = await services.add_member(ctx, access, team_id, body)
    response.status_code = 201 if added else 200
    return out


@router.put("/teams/{team_id}/members/{user_id}", response_model=s.MemberOut)
async def set_member(team_id: str, user_id: str, body: s.MemberSet, ctx: Context,
                     access: Annotated[Access, Depends(require("members:write"))]) -> s.MemberOut:
    """Add a user to the team with a role, or change their role (409 for the last owner)."""
    return await services.set_member(ctx, access, team_id, user_id, body)


@router.delete("/teams/{team_id}/members/{user_id}", status_code=204, response_class=Response)
async def remove_member(team_id: str, user_id: str, ctx: Context,
                        access: Annotated[Access, Depends(require("members:write"))]) -> Response:
    """Take a user out of the team; 409 for its last owner (add another owner first)."""
    await services.remove_member(ctx, access, team_id, user_id)
    return Response(status_code=204)
