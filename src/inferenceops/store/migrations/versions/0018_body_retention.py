"""Body retention: each team's setting and the bodies kept for teams that opted in.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05

``team_retention``: one row per team whose retention is not the default (``none``): its mode
(``store`` or ``zero``) and, for ``store``, the days bodies are kept; it goes with its team.
``retained_bodies``: a request and its answer, redacted, until ``expires_at`` (the retention
sweep deletes them); read by team and time for the compliance export.

Hand-written and self-contained, like 0001-0017 (it does not import ``store.tables``; the
CHECK text is spelled out, names wrapped in ``op.f`` as 0002 explains).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | None = None
depends_on: str | None = None

RETENTION = "(mode = 'zero' AND days IS NULL) OR (mode = 'store' AND days BETWEEN 1 AND 3650)"


def upgrade() -> None:
    op.create_table(
        "team_retention",
        sa.Column("team_id", sa.String(40), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("team_id", name="pk_team_retention"),
        sa.CheckConstraint(RETENTION, name=op.f("ck_team_retention_mode_days")),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE",
                                name="fk_team_retention_team_id_teams"),
    )
    op.create_table(
        "retained_bodies",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False,
                  autoincrement=True),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_retained_bodies"),
    )
    op.create_index("ix_retained_bodies_expires_at", "retained_bodies", ["expires_at"])
    op.create_index("ix_retained_bodies_team_id_at", "retained_bodies", ["team_id", "at"])


def downgrade() -> None:
    op.drop_table("retained_bodies")
    op.drop_table("team_retention")
