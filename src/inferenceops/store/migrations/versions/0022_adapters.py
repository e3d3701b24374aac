"""LoRA adapters as catalog rows, and how many a deployment keeps loaded per replica.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05

``adapters``: name (unique), its base model by id (no ON DELETE action: a model cannot be
deleted while an adapter names it), source (what the engine loads it from), description,
``managed_by`` and timestamps. ``deployments.max_loras``: LoRA adapters the gateway keeps
loaded on each replica; NULL: the default (a simulator's profile, else 1). Only CREATE TABLE
and ADD COLUMN (no table rebuild, as 0003 explains). Hand-written and self-contained.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "adapters",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("model_id", sa.String(40), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("managed_by", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_adapters"),
        sa.UniqueConstraint("name", name="uq_adapters_name"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_adapters_model_id_models"),
    )
    op.create_index("ix_adapters_model_id", "adapters", ["model_id"])
    op.add_column("deployments", sa.Column("max_loras", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("deployments", "max_loras")
    op.drop_index("ix_adapters_model_id", table_name="adapters")
    op.drop_table("adapters")
