"""A model's canary split and fallback chain (``config.spec.routes``).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05

``models.routing``: ``{"canary": [...], "fallbacks": [...]}`` as the spec writes them, the
deployments and models by name (the repository checks they exist on every write, and refuses
to delete or rename what a model's routing names); NULL for a model with neither.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | None = None
depends_on: str | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("routing", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("routing")
