"""Invitations to join a team: offer, list, accept, decline, withdraw.

A team owner cannot put someone in their team on their own: they offer a
role, and the person joins by accepting (the admin service decides who may do
what; this module keeps the rows straight). At most one *pending* invitation
exists per (team, user): inviting again updates its role and expiry. Accepting
adds the membership (``users.set_membership``, so the last-owner rule and the
revision bump apply) in the caller's transaction. Invitations are kept after
they are decided, for the record; they do not affect the snapshot, so only
accepting (through the membership) bumps the revision.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import Conflict, NotFound
from inferenceops.store.records import InvitationRecord, MembershipRecord
from inferenceops.store.repo._common import check_choice
from inferenceops.store.repo.users import set_membership
from inferenceops.store.tables import utcnow
from inferenceops.store.tables_identity import TEAM_ROLES, Invitation, Membership

PENDING, ACCEPTED, DECLINED, WITHDRAWN = "pending", "accepted", "declined", "withdrawn"


def invitation_record(row: Invitation) -> InvitationRecord:
    return InvitationRecord(row.id, row.team_id, row.user_id, row.role, row.state, row.invited_by,
                            row.created_at, row.expires_at, row.decided_at)


async def invite(session: AsyncSession, team_id: str, user_id: str, role: str, *, invited_by: str,
                 expires_at: datetime, now: datetime | None = None) -> InvitationRecord:
    """Offer ``role`` in ``team_id`` to ``user_id`` (or renew the pending offer).

    ``Conflict`` if the user is a member already: change their role instead.
    """
    check_choice("a team role", role, TEAM_ROLES)
    if await session.get(Membership, (team_id, user_id)) is not None:
        raise Conflict(f"user {user_id!r} is already a member of team {team_id!r}; change their "
                       "role instead")
    now = now or utcnow()
    row = await _pending(session, team_id, user_id)
    if row is None:
        row = Invitation(team_id=team_id, user_id=user_id, state=PENDING, created_at=now)
        session.add(row)
    row.role, row.invited_by, row.expires_at = role, invited_by, expires_at
    await session.flush()
    return invitation_record(row)


async def get_invitation(session: AsyncSession, invitation_id: str, *,
                         lock: bool = False) -> InvitationRecord:
    return invitation_record(await _get(session, invitation_id, lock=lock))


async def list_invitations(session: AsyncSession, *, team_id: str | None = None,
                           user_id: str | None = None, pending_only: bool = True,
                           now: datetime | None = None) -> tuple[InvitationRecord, ...]:
    """Invitations of a team and/or to a user, oldest first; by default only those still open."""
    stmt = select(Invitation)
    if team_id is not None:
        stmt = stmt.where(Invitation.team_id == team_id)
    if user_id is not None:
        stmt = stmt.where(Invitation.user_id == user_id)
    if pending_only:
        stmt = stmt.where(Invitation.state == PENDING, Invitation.expires_at > (now or utcnow()))
    rows = (await session.execute(stmt.order_by(Invitation.created_at, Invitation.id))).scalars()
    return tuple(invitation_record(row) for row in rows)


async def accept(session: AsyncSession, invitation_id: str, *,
                 now: datetime | None = None) -> tuple[InvitationRecord, MembershipRecord]:
    """Join the team with the offered role; ``Conflict`` if the offer is no longer open."""
    now = now or utcnow()
    row = await _open(session, invitation_id, now)
    member = await set_membership(session, row.team_id, row.user_id, row.role, now=now)
    row.state, row.decided_at = ACCEPTED, now
    await session.flush()
    return invitation_record(row), member


async def decide(session: AsyncSession, invitation_id: str, state: str, *,
                 now: datetime | None = None) -> InvitationRecord:
    """Close an open invitation as ``declined`` (by the invitee) or ``withdrawn`` (by the team)."""
    check_choice("an invitation outcome", state, (DECLINED, WITHDRAWN))
    now = now or utcnow()
    row = await _open(session, invitation_id, now)
    row.state, row.decided_at = state, now
    await session.flush()
    return invitation_record(row)


async def _get(session: AsyncSession, invitation_id: str, *, lock: bool) -> Invitation:
    row = await session.get(Invitation, invitation_id, with_for_update=lock or None,
                            populate_existing=lock)
    if row is None:
        raise NotFound(f"no invitation with id {invitation_id!r}")
    return row


async def _open(session: AsyncSession, invitation_id: str, now: datetime) -> Invitation:
    row = await _get(session, invitation_id, lock=True)
    if row.state != PENDING:
        raise Conflict(f"invitation {invitation_id!r} was {row.state} already")
    if row.expires_at <= now:
        raise Conflict(f"invitation {invitation_id!r} expired at {row.expires_at.isoformat()}; "
                       "ask the team's owner for a new one")
    return row


async def _pending(session: AsyncSession, team_id: str, user_id: str) -> Invitation | None:
    stmt = (select(Invitation).where(Invitation.team_id == team_id, Invitation.user_id == user_id,
                                     Invitation.state == PENDING).with_for_update())
    return (await session.execute(stmt)).scalars().first()
