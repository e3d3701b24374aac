"""Invitations to join a team, and who created each API key.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

A team owner no longer adds people to their team directly: they invite them, and the
person joins by accepting (``admin.api.invitation_service``). ``invitations`` keeps
every invitation with its state (``pending`` until accepted, declined, withdrawn or
expired), so the audit log and the team owner can see what was offered and when.
One pending invitation per (team, user) at most: inviting again updates it.

``api_keys.created_by`` records the actor that created a key (``user:<id>``,
``key:<id>``, ``system:bootstrap``, …); NULL for keys created before this revision.

Hand-written and self-contained, like 0001-0003 (it does not import ``store.tables``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.String(40)


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("created_by", sa.Text(), nullable=True))
    op.create_table(
        "invitations",
        sa.Column("id", ID, nullable=False),
        sa.Column("team_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("invited_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_invitations"),
        sa.CheckConstraint("role IN ('owner', 'member', 'viewer')", name=op.f("ck_invitations_role")),
        sa.CheckConstraint("state IN ('pending', 'accepted', 'declined', 'withdrawn')",
                           name=op.f("ck_invitations_state")),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE",
                                name="fk_invitations_team_id_teams"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_invitations_user_id_users"),
    )
    op.create_index("ix_invitations_team_id", "invitations", ["team_id"])
    op.create_index("ix_invitations_user_id", "invitations", ["user_id"])


def downgrade() -> None:
    op.drop_table("invitations")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("created_by")
