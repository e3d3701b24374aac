"""Usage records say what guardrail policies found and did (``usage_records.guardrails``).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04

Text such as ``pii@2 card:block email:redact×2``: the policies that applied, then each
finding's entity type and action — never the text that was found. NULL when no policy
found anything (and for every record written before).

Hand-written and self-contained, like 0001-0015 (it does not import ``store.tables``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("guardrails", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("guardrails")
