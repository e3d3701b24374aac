"""Files: the Files API's rows (``batch/``); each file's bytes live on disk in the files folder.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

One row per file: its owner (``team_id``, or ``principal_id`` for a key without a team),
the key that uploaded it, ``purpose`` (``batch`` uploads; ``batch_output`` for what
batches will write), ``filename``, ``size_bytes``, ``line_count`` (request lines of a
batch file), ``status``, ``path`` (the name under the files folder) and the times.
Ids sort by creation time, so the two indexes serve "this owner's files, newest first"
and keyset paging on the id alone.

Written while 0012 was reserved for another change (replica drains, which has landed):
nothing here depends on 0012.

Hand-written and self-contained, like 0001-0011 (it does not import ``store.tables``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=True),
        sa.Column("principal_id", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_files"),
        sa.CheckConstraint("purpose IN ('batch', 'batch_output')", name=op.f("ck_files_purpose")),
        sa.CheckConstraint("status IN ('uploaded', 'processed', 'error')",
                           name=op.f("ck_files_status")),
        sa.CheckConstraint("size_bytes >= 0 AND line_count >= 0", name=op.f("ck_files_counts")),
    )
    op.create_index("ix_files_team_id_id", "files", ["team_id", "id"])
    op.create_index("ix_files_principal_id_id", "files", ["principal_id", "id"])


def downgrade() -> None:
    op.drop_table("files")
