"""A batch's ``output_expires_after``: how long its output and error files are kept.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05

``batches.output_expires_after_s``: the seconds OpenAI's ``output_expires_after`` gave at
create (3600 to 2592000, anchored at each file's creation); NULL: the files are kept until
deleted, as OpenAI keeps ``batch_output`` files. Finalising sets the files' ``expires_at``
from it, and the files-expiry service deletes them like any expired file.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("output_expires_after_s", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("output_expires_after_s")
