"""Models served by several deployments (canary weights) and fallback chains.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05

Reserved for this change; its tables and columns are added with the code that uses them.
"""

from __future__ import annotations

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
