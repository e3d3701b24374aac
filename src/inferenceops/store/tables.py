"""The control-plane schema as SQLAlchemy 2 declarative tables (the ORM side of the store).

Owns: the declarative ``Base`` and its ``metadata``, constraint names (one naming convention,
so migrations can refer to them), portable column types, and two tables of its own (the audit
log, the control state). The other tables are declared on ``Base`` by area in the sibling
modules ``tables_*.py`` (identity, admission, catalog, usage, files, batch, …), which this
module imports at its end. Migrations in ``store/migrations`` must produce exactly this
schema — a test compares them.

Conventions: string primary keys with a readable prefix (``store.ids``);
timestamps are timezone-aware UTC on both backends (``UTCDateTime``); JSON
columns are ``JSON`` (``JSONB`` on PostgreSQL); key digests are 32 raw bytes.
Nothing here runs queries, and no ORM object leaves the store (repositories
return the plain records of ``store.records``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

REVISION_KEY = "revision"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on both backends (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store only accepts timezone-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: JSON that is JSONB on PostgreSQL (indexable, compact) and JSON text on SQLite.
PortableJSON = JSON().with_variant(JSONB(), "postgresql")
#: The same for nullable columns: Python None is SQL NULL (not the JSON value ``null``).
NullableJSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _subject_rule(scopes: dict[str, tuple[str, ...]], columns: tuple[str, ...]) -> str:
    """CHECK text: for each scope, exactly its subject columns are set (the others NULL)."""
    return " OR ".join(
        "(" + " AND ".join([f"scope = '{scope}'"] + [
            f"{c} IS {'NOT NULL' if c in needed else 'NULL'}" for c in columns]) + ")"
        for scope, needed in scopes.items())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: PortableJSON,
                           list[str]: PortableJSON, bytes: LargeBinary()}


class AuditEntry(Base):
    """One append-only, hash-chained audit record (``audit/`` owns the chaining rules)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "target_type", "target_id"),)

    # BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is the rowid.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    target_type: Mapped[str] = mapped_column(Text)
    target_id: Mapped[str] = mapped_column(Text)
    before: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)
    source: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class ControlState(Base):
    """Small named counters; ``revision`` is bumped by every snapshot-relevant mutation."""

    __tablename__ = "control_state"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


metadata = Base.metadata

# LoRA adapters on the models (``config.spec.adapters``), declared on ``Base`` in their own
# module (imported last, so that ``metadata`` holds them wherever this module is imported).
from inferenceops.store import tables_adapters as _tables_adapters  # noqa: E402, F401

# Operators' rate limits and budgets, declared on ``Base`` in their own module too (imported
# last, so that ``metadata`` holds them).
from inferenceops.store import tables_admission as _tables_admission  # noqa: E402, F401

# The Batch API's tables, declared on ``Base`` in their own module (imported last, so that
# ``metadata`` holds them wherever this module is imported).
from inferenceops.store import tables_batch as _tables_batch  # noqa: E402, F401

# The model catalog (providers, deployments, models, their prices), declared on ``Base`` in
# their own module too (imported last, so that ``metadata`` holds them).
from inferenceops.store import tables_catalog as _tables_catalog  # noqa: E402, F401

# Drained replicas (operational state, apart from the deployments' specs), declared on ``Base``
# in their own module too (imported last, so that ``metadata`` holds them).
from inferenceops.store import tables_drain as _tables_drain  # noqa: E402, F401

# The Files API's files, declared on ``Base`` in their own module too (imported last, so that
# ``metadata`` holds them).
from inferenceops.store import tables_files as _tables_files  # noqa: E402, F401

# Guardrail policies and attachments set through the admin API, declared on ``Base`` in their
# own module too (imported last, so that ``metadata`` holds them).
from inferenceops.store import tables_guardrails as _tables_guardrails  # noqa: E402, F401

# The control plane's identity (teams, users, service accounts, memberships, keys, invitations,
# sign-in links, grants), declared on ``Base`` in their own module too (imported last, so that
# ``metadata`` holds them).
from inferenceops.store import tables_identity as _tables_identity  # noqa: E402, F401

# Teams' body retention and the bodies retained (a team's opt-in), declared on ``Base`` in
# their own module too (imported last, so that ``metadata`` holds them).
from inferenceops.store import tables_retention as _tables_retention  # noqa: E402, F401

# The usage ledger and its rollups, declared on ``Base`` in their own module too (imported
# last, so that ``metadata`` holds them).
from inferenceops.store import tables_usage as _tables_usage  # noqa: E402, F401
