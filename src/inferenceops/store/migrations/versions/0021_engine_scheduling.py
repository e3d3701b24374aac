"""A deployment's ``scheduling_policy``: how its engines order their queue.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05

``deployments.scheduling_policy``: ``fcfs`` (the default, and every row before this one) or
``priority`` — the engines run vLLM's priority scheduling, and the gateway writes each
request's service class into its ``priority`` (interactive 0, background and batch 1).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("deployments", sa.Column("scheduling_policy", sa.Text(), nullable=False,
                                           server_default=sa.text("'fcfs'")))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("scheduling_policy")
