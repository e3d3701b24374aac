"""Batch files that expire; batch promotion state.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05

Reserved for this change; its tables and columns are added with the code that uses them.
"""

from __future__ import annotations

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
