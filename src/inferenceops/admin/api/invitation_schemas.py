"""Bodies of the invitation routes: an owner's offer, and the invitation as both sides see it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from inferenceops.admin.api.schemas import Email, MemberOut, TeamRole, _Request
from inferenceops.store.records import InvitationRecord

DEFAULT_EXPIRY_S = 7 * 24 * 3600
MAX_EXPIRY_S = 90 * 24 * 3600


class InvitationCreate(_Request):
    """Whom to invite — by ``user_id`` or by ``email``, exactly one — with which role."""

    user_id: str | None = Field(None, min_length=1, max_length=64)
    email: Email | None = None
    role: TeamRole
    expires_in_s: int = Field(DEFAULT_EXPIRY_S, ge=60, le=MAX_EXPIRY_S,
                              description="How long the invitation can be accepted")


class InvitationOut(BaseModel):
    id: str
    team_id: str
    team_name: str = Field(description="So the invitee knows what they are asked to join")
    user_id: str
    role: str
    state: str = Field(description="pending, accepted, declined or withdrawn")
    invited_by: str = Field(description="The actor that invited: user:<id>, key:<id>, …")
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None

    @classmethod
    def of(cls, r: InvitationRecord, team_name: str) -> InvitationOut:
        return cls(id=r.id, team_id=r.team_id, team_name=team_name, user_id=r.user_id, role=r.role,
                   state=r.state, invited_by=r.invited_by, created_at=r.created_at,
                   expires_at=r.expires_at, decided_at=r.decided_at)


class InvitationAccepted(BaseModel):
    """What accepting changed, for the audit log: the invitation and the new membership."""

    invitation: InvitationOut
    member: MemberOut
