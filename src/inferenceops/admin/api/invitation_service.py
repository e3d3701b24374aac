"""Admin service for invitations: how a person comes to be in a team with their consent.

A team owner (``members:write`` on the team) offers a role to a user, named by
email or id; the user sees their open invitations and accepts or declines
them; the owner may withdraw one until then. Accepting adds the membership
with the offered role. A platform admin may still add people directly
(``services.add_member``); an owner cannot, so no owner can pull a user — a
platform admin, say — into their team and then act on that user's standing.

The invitee's side needs no permission: it is the caller's own invitations
(``AdminPrincipal.user_id``); a caller that is not a stored user has none, and
someone else's invitation is 404. Every mutation writes one audit entry.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.admin.api import invitation_schemas as i
from inferenceops.admin.api import schemas as s
from inferenceops.admin.api.deps import Access, AdminContext
from inferenceops.admin.api.services import audit, find_user, paginate
from inferenceops.admin.principal import AdminPrincipal
from inferenceops.errors import NotFound
from inferenceops.store import errors as store_errors
from inferenceops.store import repo
from inferenceops.store.records import InvitationRecord
from inferenceops.store.repo import invitations
from inferenceops.store.tables import utcnow


async def _out(tx: AsyncSession, record: InvitationRecord) -> i.InvitationOut:
    return i.InvitationOut.of(record, (await repo.get_team(tx, record.team_id)).name)


# ---- the team's side --------------------------------------------------------------------------

async def invite(ctx: AdminContext, access: Access, team_id: str,
                 body: i.InvitationCreate) -> i.InvitationOut:
    access.check(team_id, f"team {team_id!r}", seen_with="teams:read")
    async with ctx.db.transaction("inviting a user") as tx:
        await repo.get_team(tx, team_id)
        user = await find_user(tx, user_id=body.user_id, email=body.email)
        record = await invitations.invite(
            tx, team_id, user.id, body.role, invited_by=access.principal.actor,
            expires_at=utcnow() + timedelta(seconds=body.expires_in_s))
        out = await _out(tx, record)
        await audit(tx, access.principal, "invitation.create", "invitation", out.id, after=out)
    return out


async def list_team_invitations(ctx: AdminContext, access: Access, team_id: str, *, limit: int,
                                after: str | None) -> s.Page[i.InvitationOut]:
    """The team's invitations still open (pending and not expired)."""
    access.check(team_id, f"team {team_id!r}")
    async with ctx.db.read() as tx:
        team = await repo.get_team(tx, team_id)
        found = await invitations.list_invitations(tx, team_id=team_id)
    return paginate(found, lambda r: r.id, lambda r: i.InvitationOut.of(r, team.name), after, limit)


async def withdraw(ctx: AdminContext, access: Access, team_id: str,
                   invitation_id: str) -> i.InvitationOut:
    access.check(team_id, f"team {team_id!r}", seen_with="teams:read")
    async with ctx.db.transaction("withdrawing an invitation") as tx:
        if (await invitations.get_invitation(tx, invitation_id)).team_id != team_id:
            raise NotFound(f"No invitation {invitation_id!r} in team {team_id!r}")
        out = await _out(tx, await invitations.decide(tx, invitation_id, invitations.WITHDRAWN))
        await audit(tx, access.principal, "invitation.withdraw", "invitation", invitation_id,
                    after=out)
    return out


# ---- the invitee's side -----------------------------------------------------------------------

async def my_invitations(ctx: AdminContext, principal: AdminPrincipal, *, limit: int,
                         after: str | None) -> s.Page[i.InvitationOut]:
    if principal.user_id is None:
        return s.Page(data=[], next_after=None)
    async with ctx.db.read() as tx:
        found = [await _out(tx, r)
                 for r in await invitations.list_invitations(tx, user_id=principal.user_id)]
    return paginate(found, lambda r: r.id, lambda r: r, after, limit)


async def _mine(tx: AsyncSession, principal: AdminPrincipal, invitation_id: str) -> InvitationRecord:
    """The caller's own invitation; anyone else's is 404 (it is not theirs to see)."""
    try:
        record: InvitationRecord | None = await invitations.get_invitation(tx, invitation_id)
    except store_errors.NotFound:
        record = None
    if record is None or principal.user_id is None or record.user_id != principal.user_id:
        raise NotFound(f"You have no invitation {invitation_id!r}")
    return record


async def accept(ctx: AdminContext, principal: AdminPrincipal,
                 invitation_id: str) -> i.InvitationOut:
    async with ctx.db.transaction("accepting an invitation") as tx:
        await _mine(tx, principal, invitation_id)
        record, member = await invitations.accept(tx, invitation_id)
        out = await _out(tx, record)
        await audit(tx, principal, "invitation.accept", "invitation", invitation_id,
                    after=i.InvitationAccepted(invitation=out, member=s.MemberOut.of(member)))
    return out


async def decline(ctx: AdminContext, principal: AdminPrincipal,
                  invitation_id: str) -> i.InvitationOut:
    async with ctx.db.transaction("declining an invitation") as tx:
        await _mine(tx, principal, invitation_id)
        out = await _out(tx, await invitations.decide(tx, invitation_id, invitations.DECLINED))
        await audit(tx, principal, "invitation.decline", "invitation", invitation_id, after=out)
    return out
