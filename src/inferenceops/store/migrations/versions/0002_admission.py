"""Admission: operators' rate limits and budgets, and background-only API keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-20

Hand-written and self-contained, like 0001 (it does not import ``store.tables``;
the CHECK texts are spelled out so a later change to the code cannot silently
change what this revision creates). CHECK names are wrapped in ``op.f`` — already
final — or the naming convention (``ck_<table>_<name>``) would be applied twice,
as it was to 0001's CHECKs (``ck_teams_ck_teams_weight_positive``). ``api_keys.background_only`` is added with
a server default so existing keys become ``false``, and ``api_keys.lineage_id`` (the
first key of a rotation chain, NULL for a key that is its own first); SQLite can add such a
column in place, and drops it again in batch mode (a table rebuild).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.String(40)

LIMIT_SUBJECT = (
    "(scope = 'key' AND key_id IS NOT NULL AND team_id IS NULL AND model IS NULL) OR "
    "(scope = 'team' AND key_id IS NULL AND team_id IS NOT NULL AND model IS NULL) OR "
    "(scope = 'model' AND key_id IS NULL AND team_id IS NULL AND model IS NOT NULL) OR "
    "(scope = 'team_model' AND key_id IS NULL AND team_id IS NOT NULL AND model IS NOT NULL)")
BUDGET_SUBJECT = (
    "(scope = 'team' AND key_id IS NULL AND team_id IS NOT NULL) OR "
    "(scope = 'key' AND key_id IS NOT NULL AND team_id IS NULL)")


def _ts(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _subject_fks(table: str) -> list[sa.ForeignKeyConstraint]:
    return [sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], ondelete="CASCADE",
                                    name=f"fk_{table}_key_id_api_keys"),
            sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE",
                                    name=f"fk_{table}_team_id_teams")]


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("background_only", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    op.add_column("api_keys", sa.Column("lineage_id", ID, nullable=True))
    op.create_table(
        "limits",
        sa.Column("id", ID, nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("key_id", ID, nullable=True),
        sa.Column("team_id", ID, nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("rpm", sa.BigInteger(), nullable=True),
        sa.Column("tpm", sa.BigInteger(), nullable=True),
        sa.Column("concurrency", sa.BigInteger(), nullable=True),
        _ts("created_at"), _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_limits"),
        sa.UniqueConstraint("subject", name="uq_limits_subject"),
        sa.CheckConstraint("scope IN ('key', 'team', 'model', 'team_model')", name=op.f("ck_limits_scope")),
        sa.CheckConstraint(LIMIT_SUBJECT, name=op.f("ck_limits_subject_columns")),
        sa.CheckConstraint("rpm IS NULL OR rpm > 0", name=op.f("ck_limits_rpm_positive")),
        sa.CheckConstraint("tpm IS NULL OR tpm > 0", name=op.f("ck_limits_tpm_positive")),
        sa.CheckConstraint("concurrency IS NULL OR concurrency > 0",
                           name=op.f("ck_limits_concurrency_positive")),
        sa.CheckConstraint("rpm IS NOT NULL OR tpm IS NOT NULL OR concurrency IS NOT NULL",
                           name=op.f("ck_limits_some_limit")),
        *_subject_fks("limits"),
    )
    op.create_index("ix_limits_key_id", "limits", ["key_id"])
    op.create_index("ix_limits_team_id", "limits", ["team_id"])
    op.create_table(
        "budgets",
        sa.Column("id", ID, nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("key_id", ID, nullable=True),
        sa.Column("team_id", ID, nullable=True),
        sa.Column("amount_nanos", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        _ts("created_at"), _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_budgets"),
        sa.UniqueConstraint("subject", "period", name="uq_budgets_subject_period"),
        sa.CheckConstraint("scope IN ('team', 'key')", name=op.f("ck_budgets_scope")),
        sa.CheckConstraint(BUDGET_SUBJECT, name=op.f("ck_budgets_subject_columns")),
        sa.CheckConstraint("amount_nanos > 0", name=op.f("ck_budgets_amount_positive")),
        sa.CheckConstraint("period IN ('daily', 'weekly', 'monthly', 'lifetime')",
                           name=op.f("ck_budgets_period")),
        sa.CheckConstraint("mode IN ('hard', 'soft')", name=op.f("ck_budgets_mode")),
        *_subject_fks("budgets"),
    )
    op.create_index("ix_budgets_key_id", "budgets", ["key_id"])
    op.create_index("ix_budgets_team_id", "budgets", ["team_id"])


def downgrade() -> None:
    op.drop_table("budgets")
    op.drop_table("limits")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("lineage_id")
        batch.drop_column("background_only")
