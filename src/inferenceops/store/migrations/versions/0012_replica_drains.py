"""Drained replicas: one row per replica an operator drained (``store.tables_drain``).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

Operational state kept apart from the deployment's spec, so re-applying a platform file
never undrains a replica. Rows go with their deployment (ON DELETE CASCADE).

Hand-written and self-contained, like 0001-0011 (it does not import ``store.tables``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "replica_drains",
        sa.Column("deployment_id", sa.String(40), nullable=False),
        sa.Column("replica", sa.Text(), nullable=False),
        sa.Column("drained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("drained_by", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE",
                                name="fk_replica_drains_deployment_id_deployments"),
        sa.PrimaryKeyConstraint("deployment_id", "replica", name="pk_replica_drains"),
    )


def downgrade() -> None:
    op.drop_table("replica_drains")
