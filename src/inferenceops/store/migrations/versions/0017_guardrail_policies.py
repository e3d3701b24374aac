"""Guardrail policies and attachments set through the admin API (``store.tables_guardrails``).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05

``guardrail_policies``: name (unique), version (up by one on every change), description and
the rules as JSON. ``guardrail_attachments``: a policy *name* (it may be one of the platform
file's policies, which have no row) on the platform, a team, a model or a key; one row per
(policy, subject); team and key attachments go with their team or key.

Hand-written and self-contained, like 0001-0016 (it does not import ``store.tables``; the
CHECK texts are spelled out, names wrapped in ``op.f`` as 0002 explains).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.String(40)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SUBJECT = (
    "(scope = 'global' AND team_id IS NULL AND model IS NULL AND key_id IS NULL) OR "
    "(scope = 'team' AND team_id IS NOT NULL AND model IS NULL AND key_id IS NULL) OR "
    "(scope = 'model' AND team_id IS NULL AND model IS NOT NULL AND key_id IS NULL) OR "
    "(scope = 'key' AND team_id IS NULL AND model IS NULL AND key_id IS NOT NULL)")


def _ts(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "guardrail_policies",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("rules", JSON, nullable=False),
        _ts("created_at"), _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_guardrail_policies"),
        sa.UniqueConstraint("name", name="uq_guardrail_policies_name"),
        sa.CheckConstraint("version > 0", name=op.f("ck_guardrail_policies_version_positive")),
    )
    op.create_table(
        "guardrail_attachments",
        sa.Column("id", ID, nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("team_id", ID, nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("key_id", ID, nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_guardrail_attachments"),
        sa.UniqueConstraint("policy", "subject", name="uq_guardrail_attachments_policy_subject"),
        sa.CheckConstraint("scope IN ('global', 'team', 'model', 'key')",
                           name=op.f("ck_guardrail_attachments_scope")),
        sa.CheckConstraint(SUBJECT, name=op.f("ck_guardrail_attachments_subject_columns")),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE",
                                name="fk_guardrail_attachments_team_id_teams"),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], ondelete="CASCADE",
                                name="fk_guardrail_attachments_key_id_api_keys"),
    )
    op.create_index("ix_guardrail_attachments_team_id", "guardrail_attachments", ["team_id"])
    op.create_index("ix_guardrail_attachments_key_id", "guardrail_attachments", ["key_id"])


def downgrade() -> None:
    op.drop_table("guardrail_attachments")
    op.drop_table("guardrail_policies")
