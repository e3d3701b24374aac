"""Deployments declare their GPUs and what they cost per GPU-hour (GPU-time chargeback).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

``deployments.gpu_cost``: ``config.spec.GpuCostSpec`` as JSON — GPUs, cost per GPU-hour (decimal
text), changes with their effective dates, the cost model; NULL for a deployment that declares
none (an external provider, priced per token). Existing rows get NULL.

Hand-written and self-contained, like 0001-0009 (it does not import ``store.tables``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    json = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
    op.add_column("deployments", sa.Column("gpu_cost", json, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("gpu_cost")
