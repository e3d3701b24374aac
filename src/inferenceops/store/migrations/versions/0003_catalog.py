"""Catalog: providers, deployments and models hold every field of the platform YAML's specs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-06-01

Hand-written and self-contained, like 0001 and 0002 (it does not import ``store.tables``).
0001 made the three tables with a few columns; this adds the rest of ``config.ProviderSpec``,
``DeploymentSpec`` and ``ModelSpec``, plus ``managed_by`` (who owns a row: NULL for the admin
API, ``"config"`` for a platform file), and an index on ``deployments.provider_id``.

Only ADD COLUMN and CREATE INDEX, never a table rebuild: SQLite rebuilds a table to alter a
column or a foreign key, and dropping a table that other rows reference fails under
``foreign_keys=ON`` (even with deferred checks), so a rebuild of ``deployments`` would break on
any database holding models. Hence 0001's foreign keys stay as they are (no ON DELETE action:
a referenced provider or deployment cannot be deleted, as with RESTRICT), ``replicas`` stays
NOT NULL (the spec's "no value" is stored as JSON ``null``), and no CHECKs are added: the
allowed values are ``config.py``'s, validated by the repository, so a new engine or dialect
there needs no migration. NOT NULL columns get server defaults (the specs' defaults) so rows
written before this revision stay valid. The downgrade drops the columns in place (SQLite
3.35 or newer), for the same reason.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")

COLUMNS: dict[str, list[sa.Column[Any]]] = {
    "providers": [
        sa.Column("api_key_env", sa.Text(), nullable=True),
        sa.Column("managed_by", sa.Text(), nullable=True),
    ],
    "deployments": [
        sa.Column("profile", sa.Text(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("api_key_env", sa.Text(), nullable=True),
        sa.Column("max_connections", sa.Integer(), nullable=False, server_default=sa.text("256")),
        sa.Column("queue", JSON, nullable=False, server_default=sa.text("'{}'")),
        sa.Column("managed_by", sa.Text(), nullable=True),
    ],
    "models": [
        sa.Column("price", JSON, nullable=True),
        sa.Column("max_output_tokens", sa.Integer(), nullable=False, server_default=sa.text("4096")),
        sa.Column("managed_by", sa.Text(), nullable=True),
    ],
}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        for column in columns:
            op.add_column(table, column)
    op.create_index("ix_deployments_provider_id", "deployments", ["provider_id"])


def downgrade() -> None:
    op.drop_index("ix_deployments_provider_id", table_name="deployments")
    for table, columns in reversed(COLUMNS.items()):
        for column in reversed(columns):
            op.drop_column(table, column.name)
