"""Usage rollups get a fourth level: sums over all keys, models and adapters per team and deployment.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05

Rows with ``key_id = '*m'`` (``store.repo.usage_rollups.ALL_MODELS``), ``model`` and
``adapter`` NULL hold, per hour and day, the sums per team and deployment: what the
chargeback report shares a deployment's GPU cost by, and what a report by team (or team and
deployment) asks. They read one row per team and deployment an hour instead of one per team,
model and adapter, summed again (a week by hour at 10 million records went from ~60 ms of
grouping in the database to a plain index range). New steps write them with the other levels;
this migration makes them for the buckets rolled up before, from the ``'*'`` rows (every key's
sums per team), so the levels agree from the start.

Hand-written and self-contained, like 0001-0022 (it does not import ``store.tables``).
"""

from __future__ import annotations

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | None = None
depends_on: str | None = None

_MEASURES = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens",
             "estimated_requests", "errors", "cost_nanos")


def upgrade() -> None:
    sums = ", ".join(f"SUM({m})" for m in _MEASURES)
    op.execute(
        f"INSERT INTO usage_rollups (granularity, bucket, team_id, key_id, model, adapter, "
        f"deployment, {', '.join(_MEASURES)}) "
        f"SELECT granularity, bucket, team_id, '*m', NULL, NULL, deployment, {sums} "
        "FROM usage_rollups WHERE key_id = '*' "
        "GROUP BY granularity, bucket, team_id, deployment")


def downgrade() -> None:
    op.execute("DELETE FROM usage_rollups WHERE key_id = '*m'")
