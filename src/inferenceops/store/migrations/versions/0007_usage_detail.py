"""Usage records say how much of the prompt the engine's prefix cache served, and which adapter.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

``cached_tokens``: of ``prompt_tokens``, what the engine reported as served from its
prefix cache (``usage.prompt_tokens_details.cached_tokens``); 0 for earlier rows and
engines that do not say. ``adapter``: the LoRA adapter that served the request, once
deployments serve adapters; NULL otherwise.

Hand-written and self-contained, like 0001-0006 (it does not import ``store.tables``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("cached_tokens", sa.BigInteger(), nullable=False,
                                   server_default=sa.text("0")))
        batch.add_column(sa.Column("adapter", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("adapter")
        batch.drop_column("cached_tokens")
