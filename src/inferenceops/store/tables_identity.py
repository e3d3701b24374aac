"""Who may call the gateway: teams, users, service accounts, memberships, API keys,
invitations, sign-in links and per-team model grants.

Declared on ``tables.Base`` (``tables`` imports this module at its end); kept apart so each
area of the schema reads on its own. Migrations 0001, 0004 and 0006 (among later ones).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from inferenceops.store import ids
from inferenceops.store.tables import Base, NullableJSON, _in, utcnow

PLATFORM_ROLES = ("platform-admin", "auditor", "billing")
TEAM_ROLES = ("owner", "member", "viewer")
SCOPES = ("inference", "batch", "admin")
INVITATION_STATES = ("pending", "accepted", "declined", "withdrawn")
LINK_METHODS = ("email", "provisioned", "admin")


class Team(Base):
    __tablename__ = "teams"
    __table_args__ = (CheckConstraint("weight > 0", name="weight_positive"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: ids.new_id(ids.TEAM))
    name: Mapped[str] = mapped_column(Text, unique=True)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("platform_role", PLATFORM_ROLES), name="platform_role"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: ids.new_id(ids.USER))
    email: Mapped[str] = mapped_column(Text, unique=True)
    display_name: Mapped[str] = mapped_column(Text, default="")
    platform_role: Mapped[str | None] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServiceAccount(Base):
    __tablename__ = "service_accounts"
    __table_args__ = (UniqueConstraint("team_id", "name"),)

    id: Mapped[str] = mapped_column(
        String(40), primary_key=True, default=lambda: ids.new_id(ids.SERVICE_ACCOUNT))
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (CheckConstraint(_in("role", TEAM_ROLES), name="role"),
                      Index(None, "user_id"))

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        # Exactly one owner: a person or a service account, never both, never neither.
        CheckConstraint("(user_id IS NULL) <> (service_account_id IS NULL)", name="one_owner"),
        CheckConstraint("length(digest) = 32", name="digest_length"),
        Index(None, "team_id"), Index(None, "user_id"), Index(None, "service_account_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: ids.new_id(ids.API_KEY))
    name: Mapped[str] = mapped_column(Text, default="")
    prefix: Mapped[str] = mapped_column(Text)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    # Keys go with what they belong to: deleting a team, user or service account deletes its keys.
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    service_account_id: Mapped[str | None] = mapped_column(
        ForeignKey("service_accounts.id", ondelete="CASCADE"))
    scopes: Mapped[list[str]] = mapped_column(default=list)
    allowed_models: Mapped[list[str] | None] = mapped_column(NullableJSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    rotated_from_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    # Its requests always queue as background work. The server default fills rows written before 0002.
    background_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The first key of its rotation chain (NULL: this key is its own first). Per-key limits and
    # budgets are counted per lineage, so rotating a key never resets what it has used.
    lineage_id: Mapped[str | None] = mapped_column(String(40))
    # The actor that created it ("user:<id>", "key:<id>", "system:bootstrap"); NULL before 0004.
    created_by: Mapped[str | None] = mapped_column(Text)


class Invitation(Base):
    """An offer to join a team with a role; the person joins by accepting it.

    ``state`` is ``pending`` until it is accepted, declined or withdrawn; a pending
    invitation past ``expires_at`` can no longer be accepted.
    """

    __tablename__ = "invitations"
    __table_args__ = (CheckConstraint(_in("role", TEAM_ROLES), name="role"),
                      CheckConstraint(_in("state", INVITATION_STATES), name="state"),
                      Index(None, "team_id"), Index(None, "user_id"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True,
                                    default=lambda: ids.new_id(ids.INVITATION))
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, default="pending")
    invited_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    decided_at: Mapped[datetime | None] = mapped_column()


class SignInLink(Base):
    """An external identity — ``(issuer, subject)`` of an OIDC token or the auth proxy — acting as
    one user. ``method``: how it was made (a verified email, provisioning, a platform admin)."""

    __tablename__ = "sign_in_links"
    __table_args__ = (UniqueConstraint("issuer", "subject"),
                      CheckConstraint(_in("method", LINK_METHODS), name="method"),
                      Index(None, "user_id"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True,
                                    default=lambda: ids.new_id(ids.SIGN_IN_LINK))
    issuer: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(Text)
    linked_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Grant(Base):
    __tablename__ = "grants"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
