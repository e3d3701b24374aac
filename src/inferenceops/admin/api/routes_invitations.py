"""Routes: a team's ``/teams/{team_id}/invitations`` and the caller's own ``/invitations``.

Thin: parse → authorize → service → schema. The team's side needs ``members:*``
on the team; the invitee's side only a signed-in user (their own invitations).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from inferenceops.admin.api import invitation_schemas as i
from inferenceops.admin.api import invitation_service as service
from inferenceops.admin.api import schemas as s
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, Principal, require

router = APIRouter(tags=["invitations"])


@router.post("/teams/{team_id}/invitations", status_code=201, response_model=i.InvitationOut)
async def invite(team_id: str, body: i.InvitationCreate, ctx: Context,
                 access: Annotated[Access, Depends(require("members:write"))]) -> i.InvitationOut:
    """Offer a user (by `email` or `user_id`) a role in the team; they join when they accept.

    Inviting someone with an open invitation renews it (new role and expiry).
    """
    return await service.invite(ctx, access, team_id, body)


@router.get("/teams/{team_id}/invitations", response_model=s.Page[i.InvitationOut])
async def list_team_invitations(
    team_id: str, ctx: Context, access: Annotated[Access, Depends(require("members:read"))],
    limit: Limit = DEFAULT_LIMIT, after: After = None,
) -> s.Page[i.InvitationOut]:
    """The team's open invitations (pending, not expired)."""
    return await service.list_team_invitations(ctx, access, team_id, limit=limit, after=after)


@router.post("/teams/{team_id}/invitations/{invitation_id}/withdraw", response_model=i.InvitationOut)
async def withdraw(team_id: str, invitation_id: str, ctx: Context,
                   access: Annotated[Access, Depends(require("members:write"))]) -> i.InvitationOut:
    return await service.withdraw(ctx, access, team_id, invitation_id)


@router.get("/invitations", response_model=s.Page[i.InvitationOut])
async def my_invitations(ctx: Context, principal: Principal, limit: Limit = DEFAULT_LIMIT,
                         after: After = None) -> s.Page[i.InvitationOut]:
    """Your own open invitations."""
    return await service.my_invitations(ctx, principal, limit=limit, after=after)


@router.post("/invitations/{invitation_id}/accept", response_model=i.InvitationOut)
async def accept(invitation_id: str, ctx: Context, principal: Principal) -> i.InvitationOut:
    """Join the team with the role offered (409 once the invitation is decided or expired)."""
    return await service.accept(ctx, principal, invitation_id)


@router.post("/invitations/{invitation_id}/decline", response_model=i.InvitationOut)
async def decline(invitation_id: str, ctx: Context, principal: Principal) -> i.InvitationOut:
    return await service.decline(ctx, principal, invitation_id)
