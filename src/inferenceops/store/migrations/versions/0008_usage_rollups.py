"""Usage rollups: the ledger summed per hour and per day, and the rollup service's state row.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

``usage_rollups`` holds, per UTC hour and per UTC day (``granularity``, ``bucket`` = its
start), per team, key, model, adapter and deployment: requests, prompt / completion /
cached tokens, requests whose tokens the gateway estimated, errors and cost in nano-units.
Whole buckets are replaced by the rollup service; there is no uniqueness rule (NULL
dimensions would defeat one anyway). Indexed for reports over a time range, overall and
per team or key.

``usage_rollup_state`` is one row (``id = 1``, inserted here) that the service locks for
each step and in which it keeps how far the rollups are final (``closed_until``), the
highest ledger id seen (``last_id``), when they last caught up (``refreshed_at``) and
where retention stopped keeping raw records (``raw_since``).

Hand-written and self-contained, like 0001-0007 (it does not import ``store.tables``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_MEASURES = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens",
             "estimated_requests", "errors", "cost_nanos")


def upgrade() -> None:
    op.create_table(
        "usage_rollups",
        # BIGINT identity on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is the rowid.
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("granularity", sa.Text(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=True),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("adapter", sa.Text(), nullable=True),
        sa.Column("deployment", sa.Text(), nullable=True),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _MEASURES),
        sa.PrimaryKeyConstraint("id", name="pk_usage_rollups"),
        sa.CheckConstraint("granularity IN ('hour', 'day')",
                           name=op.f("ck_usage_rollups_granularity")),
    )
    op.create_index("ix_usage_rollups_granularity_bucket", "usage_rollups",
                    ["granularity", "bucket"])
    op.create_index("ix_usage_rollups_team_id_granularity_bucket", "usage_rollups",
                    ["team_id", "granularity", "bucket"])
    op.create_index("ix_usage_rollups_key_id_granularity_bucket", "usage_rollups",
                    ["key_id", "granularity", "bucket"])
    state = op.create_table(
        "usage_rollup_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("closed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("raw_since", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_usage_rollup_state"),
        sa.CheckConstraint("id = 1", name=op.f("ck_usage_rollup_state_one_row")),
    )
    op.bulk_insert(state, [{"id": 1, "last_id": 0}])


def downgrade() -> None:
    op.drop_table("usage_rollup_state")
    op.drop_table("usage_rollups")
