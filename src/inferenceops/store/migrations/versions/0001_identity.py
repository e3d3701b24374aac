"""Identity and catalog: teams, users, service accounts, memberships, API keys, grants,
providers, deployments, models, the audit log and the control-state revision counter.

Revision ID: 0001
Revises:
Create Date: 2026-05-10

Hand-written and self-contained (it does not import ``store.tables``). Constraint
names follow the naming convention of ``store.tables`` so later revisions
(and SQLite batch mode) can refer to them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.String(40)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _fk(table: str, column: str, target: str, ondelete: str | None = None) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], ondelete=ondelete,
                                   name=f"fk_{table}_{column}_{target}")


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        _ts("created_at"), _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_teams"),
        sa.UniqueConstraint("name", name="uq_teams_name"),
        sa.CheckConstraint("weight > 0", name="ck_teams_weight_positive"),
    )
    op.create_table(
        "users",
        sa.Column("id", ID, nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("platform_role", sa.Text(), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.CheckConstraint("platform_role IN ('platform-admin', 'auditor', 'billing')",
                           name="ck_users_platform_role"),
    )
    op.create_table(
        "service_accounts",
        sa.Column("id", ID, nullable=False),
        sa.Column("team_id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_service_accounts"),
        sa.UniqueConstraint("team_id", "name", name="uq_service_accounts_team_id_name"),
        _fk("service_accounts", "team_id", "teams", "CASCADE"),
    )
    op.create_table(
        "memberships",
        sa.Column("team_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("team_id", "user_id", name="pk_memberships"),
        sa.CheckConstraint("role IN ('owner', 'member', 'viewer')", name="ck_memberships_role"),
        _fk("memberships", "team_id", "teams", "CASCADE"),
        _fk("memberships", "user_id", "users", "CASCADE"),
    )
    op.create_index("ix_memberships_user_id", "memberships", ["user_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.Column("team_id", ID, nullable=True),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("service_account_id", ID, nullable=True),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("allowed_models", JSON, nullable=True),
        _ts("created_at"), _ts("expires_at", True), _ts("revoked_at", True), _ts("last_used_at", True),
        sa.Column("rotated_from_id", ID, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("digest", name="uq_api_keys_digest"),
        # Exactly one owner: a person or a service account, never both, never neither.
        sa.CheckConstraint("(user_id IS NULL) <> (service_account_id IS NULL)",
                           name="ck_api_keys_one_owner"),
        sa.CheckConstraint("length(digest) = 32", name="ck_api_keys_digest_length"),
        _fk("api_keys", "team_id", "teams", "CASCADE"),
        _fk("api_keys", "user_id", "users", "CASCADE"),
        _fk("api_keys", "service_account_id", "service_accounts", "CASCADE"),
        _fk("api_keys", "rotated_from_id", "api_keys", "SET NULL"),
    )
    op.create_index("ix_api_keys_team_id", "api_keys", ["team_id"])
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_index("ix_api_keys_service_account_id", "api_keys", ["service_account_id"])
    op.create_table(
        "grants",
        sa.Column("team_id", ID, nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("team_id", "model", name="pk_grants"),
        _fk("grants", "team_id", "teams", "CASCADE"),
    )
    op.create_table(
        "providers",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("dialect", sa.Text(), nullable=False),
        sa.Column("credentials_encrypted", sa.LargeBinary(), nullable=True),
        _ts("created_at"), _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_providers"),
        sa.UniqueConstraint("name", name="uq_providers_name"),
    )
    op.create_table(
        "deployments",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("provider_id", ID, nullable=True),
        sa.Column("engine", sa.Text(), nullable=False),
        sa.Column("served_model", sa.Text(), nullable=False),
        sa.Column("replicas", JSON, nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("timeouts", JSON, nullable=False),
        _ts("created_at"), _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
        sa.UniqueConstraint("name", name="uq_deployments_name"),
        _fk("deployments", "provider_id", "providers"),
    )
    op.create_table(
        "models",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("deployment_id", ID, nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("aliases", JSON, nullable=False),
        _ts("created_at"), _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
        _fk("models", "deployment_id", "deployments"),
    )
    op.create_index("ix_models_deployment_id", "models", ["deployment_id"])
    op.create_table(
        "audit_log",
        # BIGINT identity on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is the rowid.
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        _ts("at"),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target_type", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Text(), nullable=False),
        sa.Column("before", JSON, nullable=True),
        sa.Column("after", JSON, nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.LargeBinary(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_target_type_target_id", "audit_log", ["target_type", "target_id"])
    control_state = op.create_table(
        "control_state",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_control_state"),
    )
    # Replicas poll this one row to learn that the identity/catalog changed.
    op.bulk_insert(control_state, [{"key": "revision", "value": 0}])


def downgrade() -> None:
    for table in ("control_state", "audit_log", "models", "deployments", "providers", "grants",
                  "api_keys", "memberships", "service_accounts", "users", "teams"):
        op.drop_table(table)
