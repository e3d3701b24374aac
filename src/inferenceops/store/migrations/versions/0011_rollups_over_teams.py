"""Usage rollups get a third level: sums over all keys *and teams*, for platform-wide reports.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

Rows with ``key_id = '**'`` (``store.repo.usage_rollups.ALL_TEAMS``) and ``team_id`` NULL
hold, per hour and day, the sums per model, adapter and deployment. A report that asks nothing
per team or key of a caller who sees every team (the platform's "by model, by hour" view)
reads only them: a few rows per hour instead of one per team. New steps write them with the
other two levels; this migration makes them for the buckets rolled up before, from the
``'*'`` rows (which hold every key's sums per team), so the three levels agree from the start.

Hand-written and self-contained, like 0001-0010 (it does not import ``store.tables``).
"""

from __future__ import annotations

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

_MEASURES = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens",
             "estimated_requests", "errors", "cost_nanos")


def upgrade() -> None:
    sums = ", ".join(f"SUM({m})" for m in _MEASURES)
    op.execute(
        f"INSERT INTO usage_rollups (granularity, bucket, team_id, key_id, model, adapter, "
        f"deployment, {', '.join(_MEASURES)}) "
        f"SELECT granularity, bucket, NULL, '**', model, adapter, deployment, {sums} "
        "FROM usage_rollups WHERE key_id = '*' "
        "GROUP BY granularity, bucket, model, adapter, deployment")


def downgrade() -> None:
    op.execute("DELETE FROM usage_rollups WHERE key_id = '**'")
