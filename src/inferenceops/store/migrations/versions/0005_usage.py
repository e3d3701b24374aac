"""The usage ledger (one row per request, written in batches off the hot path), and routing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

``usage_records`` is what the outbox writer stores for each request that got as far as a
key (``outbox.UsageRecord``): who, which model, deployment and replica, tokens (reported
by the engine or estimated), cost in nano-units, status, latency. No foreign keys: the
record outlives what it names. Indexed for time-range queries, overall and per team or key.

``deployments.routing`` names the routing strategy of each deployment (``routing.Router``),
``least_outstanding`` for rows that were there before.

Hand-written and self-contained, like 0001-0004 (it does not import ``store.tables``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Each deployment names its routing strategy; existing rows get the default.
    op.add_column("deployments", sa.Column("routing", sa.Text(), nullable=False,
                                           server_default=sa.text("'least_outstanding'")))
    op.create_table(
        "usage_records",
        # BIGINT identity on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is the rowid.
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=True),
        sa.Column("principal_id", sa.Text(), nullable=False),
        sa.Column("principal_kind", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("deployment", sa.Text(), nullable=True),
        sa.Column("replica", sa.Text(), nullable=True),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("priority", sa.Text(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("tokens_reported", sa.Boolean(), nullable=False),
        sa.Column("cost_nanos", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("first_byte_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_usage_records"),
    )
    op.create_index("ix_usage_records_at", "usage_records", ["at"])
    op.create_index("ix_usage_records_team_id_at", "usage_records", ["team_id", "at"])
    op.create_index("ix_usage_records_key_id_at", "usage_records", ["key_id", "at"])


def downgrade() -> None:
    op.drop_table("usage_records")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("routing")
