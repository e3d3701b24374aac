"""LoRA adapters as governed resources: registered, granted, metered.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05

Reserved for this change; its tables and columns are added with the code that uses them.
"""

from __future__ import annotations

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
