"""Price history: each model's prices over time, per deployment if need be; models.price moves there.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

``model_prices`` holds one row per entry of a model's price schedule (``metering.prices``):
from ``effective_from`` on (NULL: from the beginning), for the model or, with
``deployment_id``, only for the requests that deployment serves; input, output and cached
input prices per million tokens as the decimal text they were written in, and the batch
discount in percent. Deleting a model deletes its schedule (ON DELETE CASCADE); a deployment a
price names cannot be deleted (NO ACTION, as the catalog's other references).

Each model's ``price`` (JSON, decimal text) becomes its entry from the beginning, and the
column goes (ALTER TABLE … DROP COLUMN in place: SQLite 3.35 or newer, as 0003's downgrade;
a table rebuild would fail under ``foreign_keys=ON`` now that rows reference models). The
downgrade puts back, as ``price``, each model's own price in force when it runs (input and
output only, what 0008's spec knew) and drops the history.

Hand-written and self-contained, like 0001-0008 (it does not import ``store.tables``).
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.String(40)
JSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
WHEN = sa.DateTime(timezone=True)

_models = sa.table("models", sa.column("id", ID), sa.column("price", JSON))
_prices = sa.table(
    "model_prices", sa.column("id", ID), sa.column("model_id", ID), sa.column("deployment_id", ID),
    sa.column("effective_from", WHEN), sa.column("input_per_million", sa.Text()),
    sa.column("output_per_million", sa.Text()), sa.column("cached_input_per_million", sa.Text()),
    sa.column("batch_discount_percent", sa.Text()), sa.column("created_at", WHEN))


def _new_id() -> str:
    """``store.ids.new_id("prc")``, spelled out (a migration does not import the package)."""
    return f"prc_{base64.b32encode(secrets.token_bytes(15)).decode('ascii')[:20].lower()}"


def _amount(price: dict[str, Any], name: str) -> str:
    value = price.get(name)
    return "0" if value is None else str(value)


def _later(start: datetime | None, than: datetime | None) -> bool:
    """Whether a price starting at ``start`` started after one starting at ``than`` (None: the beginning)."""
    return start is not None and (than is None or start > than)


def upgrade() -> None:
    op.create_table(
        "model_prices",
        sa.Column("id", ID, nullable=False),
        sa.Column("model_id", ID, nullable=False),
        sa.Column("deployment_id", ID, nullable=True),
        sa.Column("effective_from", WHEN, nullable=True),
        sa.Column("input_per_million", sa.Text(), nullable=False),
        sa.Column("output_per_million", sa.Text(), nullable=False),
        sa.Column("cached_input_per_million", sa.Text(), nullable=True),
        sa.Column("batch_discount_percent", sa.Text(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_prices"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], ondelete="CASCADE",
                                name="fk_model_prices_model_id_models"),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"],
                                name="fk_model_prices_deployment_id_deployments"),
    )
    op.create_index("ix_model_prices_model_id", "model_prices", ["model_id"])
    op.create_index("ix_model_prices_deployment_id", "model_prices", ["deployment_id"])
    bind = op.get_bind()
    now = datetime.now(UTC)
    rows = [{"id": _new_id(), "model_id": model_id, "deployment_id": None, "effective_from": None,
             "input_per_million": _amount(price, "input_per_million"),
             "output_per_million": _amount(price, "output_per_million"),
             "cached_input_per_million": None, "batch_discount_percent": "0", "created_at": now}
            for model_id, price in bind.execute(sa.select(_models.c.id, _models.c.price))
            if isinstance(price, dict)]
    if rows:
        bind.execute(sa.insert(_prices), rows)
    op.drop_column("models", "price")


def downgrade() -> None:
    op.add_column("models", sa.Column("price", JSON, nullable=True))
    bind = op.get_bind()
    now = datetime.now(UTC)
    in_force: dict[str, tuple[datetime | None, dict[str, str]]] = {}
    for row in bind.execute(sa.select(_prices).where(_prices.c.deployment_id.is_(None))):
        start = row.effective_from
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=UTC)  # SQLite hands back naive UTC
        if start is not None and start > now:
            continue
        held = in_force.get(row.model_id)
        if held is None or _later(start, held[0]):
            in_force[row.model_id] = (start, {"input_per_million": row.input_per_million,
                                              "output_per_million": row.output_per_million})
    for model_id, (_, price) in in_force.items():
        bind.execute(sa.update(_models).where(_models.c.id == model_id).values(price=price))
    op.drop_table("model_prices")
