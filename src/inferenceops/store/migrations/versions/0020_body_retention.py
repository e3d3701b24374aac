"""Opt-in redacted request/response bodies with retention; zero-retention teams.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05

Reserved for this change; its tables and columns are added with the code that uses them.
"""

from __future__ import annotations

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
