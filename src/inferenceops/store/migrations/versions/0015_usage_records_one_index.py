"""The raw usage ledger keeps one index, on ``at``: the per-team and per-key ones go.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

Every read of ``usage_records`` is by time (``at``: the rollups' hour sums, the spend
rebuilt at start, retention) or by id (late records); reports per team or key read the
rollups (migration 0008), never the raw rows. The two other indexes, ``(team_id, at)`` and
``(key_id, at)``, were kept for reads that no longer exist, and each costs every insert:
measured with sqlite3's ``executemany`` of the ledger's rows, ~26 µs of CPU per record
with the three indexes, ~16 µs with ``at`` alone — on the embedded default that CPU is the
gateway worker's own (its outbox writer's thread).

Hand-written and self-contained, like 0001-0014 (it does not import ``store.tables``).
"""

from __future__ import annotations

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.drop_index("ix_usage_records_team_id_at", table_name="usage_records")
    op.drop_index("ix_usage_records_key_id_at", table_name="usage_records")


def downgrade() -> None:
    op.create_index("ix_usage_records_team_id_at", "usage_records", ["team_id", "at"])
    op.create_index("ix_usage_records_key_id_at", "usage_records", ["key_id", "at"])
