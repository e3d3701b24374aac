"""Sign-in links: which external identity (issuer, subject) acts as which user.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

A person signed in through OIDC or the trusted auth proxy was matched to their user row
by verified email on every request; an identity with no verified email kept the roles its
IdP groups mapped to, whoever it was, and a disabled user's groups still worked. Now an
identity is linked to one user once (by a verified email, by provisioning, or by a
platform admin) and found again by ``(issuer, subject)``; every request checks the linked
user's state (``admin.linking``). ``method`` says how the link was made (``email``,
``provisioned``, ``admin``) and ``linked_by`` who made it, for the record.

The bootstrap admin made by earlier revisions had the documented address
``admin@inferenceops.local``, which any IdP willing to call it verified could claim; it
becomes ``bootstrap@inferenceops.invalid`` (no IdP can verify a ``.invalid`` address, and
a platform-role user is never linked by email anyway).

Hand-written and self-contained, like 0001-0005 (it does not import ``store.tables``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.String(40)


def upgrade() -> None:
    op.create_table(
        "sign_in_links",
        sa.Column("id", ID, nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("linked_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sign_in_links"),
        sa.UniqueConstraint("issuer", "subject", name="uq_sign_in_links_issuer_subject"),
        sa.CheckConstraint("method IN ('email', 'provisioned', 'admin')",
                           name=op.f("ck_sign_in_links_method")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_sign_in_links_user_id_users"),
    )
    op.create_index("ix_sign_in_links_user_id", "sign_in_links", ["user_id"])
    op.execute(sa.text("UPDATE users SET email = 'bootstrap@inferenceops.invalid' "
                       "WHERE email = 'admin@inferenceops.local' AND platform_role = 'platform-admin'"))


def downgrade() -> None:
    op.drop_table("sign_in_links")
