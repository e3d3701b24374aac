"""Batches: the Batch API's batches and one row per request line (``batch/``).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05

``batches``: OpenAI's Batch object (status, timestamps, request counts, output and error
files) and its owner (team, or principal for a key without a team, like ``files``), the
key it runs as, and a finalisation lease. ``batch_requests``: each request line's place in
the input file (bytes, not a copy of the body), its state, attempts, retry time, the lease
of the executor running it, and once recorded the line it writes to the output or error
file. See ``store.tables_batch``.

Hand-written and self-contained, like 0001-0013 (it does not import ``store.tables``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=True),
        sa.Column("principal_id", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("input_file_id", sa.Text(), nullable=False),
        sa.Column("completion_window", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("user_metadata", _JSON, nullable=True),
        sa.Column("errors", _JSON, nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("output_file_id", sa.Text(), nullable=True),
        sa.Column("error_file_id", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        _when("lease_until"),
        _when("created_at", False),
        _when("expires_at", False),
        _when("in_progress_at"), _when("finalizing_at"), _when("completed_at"),
        _when("failed_at"), _when("expired_at"), _when("cancelling_at"), _when("cancelled_at"),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
        sa.CheckConstraint("status IN ('validating', 'failed', 'in_progress', 'finalizing', "
                           "'completed', 'expired', 'cancelling', 'cancelled')",
                           name=op.f("ck_batches_status")),
        sa.CheckConstraint("endpoint IN ('/v1/chat/completions', '/v1/completions', "
                           "'/v1/embeddings')", name=op.f("ck_batches_endpoint")),
        sa.CheckConstraint("completion_window IN ('24h', '1h')", name=op.f("ck_batches_window")),
    )
    op.create_index("ix_batches_team_id_id", "batches", ["team_id", "id"])
    op.create_index("ix_batches_principal_id_id", "batches", ["principal_id", "id"])
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_index("ix_batches_input_file_id", "batches", ["input_file_id"])
    op.create_table(
        "batch_requests",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("batch_id", sa.String(40), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("custom_id", sa.Text(), nullable=False),
        sa.Column("byte_offset", sa.BigInteger(), nullable=False),
        sa.Column("byte_length", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("not_before"),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        _when("lease_until"),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_batch_requests"),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"],
                                name="fk_batch_requests_batch_id_batches"),
        sa.UniqueConstraint("batch_id", "line", name="uq_batch_requests_batch_id_line"),
        sa.CheckConstraint("state IN ('pending', 'running', 'completed', 'failed', 'cancelled', "
                           "'expired')", name=op.f("ck_batch_requests_state")),
    )
    op.create_index("ix_batch_requests_state_id", "batch_requests", ["state", "id"])
    op.create_index("ix_batch_requests_batch_id_state", "batch_requests", ["batch_id", "state"])


def downgrade() -> None:
    op.drop_table("batch_requests")
    op.drop_table("batches")
