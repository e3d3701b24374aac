"""The usage ledger and its rollups: one row per request, its sums per hour and day, and
the rollup service's state.

Declared on ``tables.Base`` (``tables`` imports this module at its end); migrations 0005,
0007, 0008 and later ones.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Float, Index, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from inferenceops.store.tables import Base, _in


class UsageRow(Base):
    """One request as it ended: the usage ledger, written in batches by the outbox writer.

    No foreign keys: the record of what was used outlives the key, team or model it names.
    Queried by time range (reports per team or key read ``usage_rollups``).
    """

    __tablename__ = "usage_records"
    # Read by time (rollups, the spend rebuilt at start, retention) and by id: one index.
    # Per-team and per-key questions go to the rollups (migration 0015 dropped the others).
    __table_args__ = (Index(None, "at"),)

    # BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is the rowid.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column()
    key_id: Mapped[str] = mapped_column(Text)
    team_id: Mapped[str | None] = mapped_column(Text)
    principal_id: Mapped[str] = mapped_column(Text)
    principal_kind: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Text)
    deployment: Mapped[str | None] = mapped_column(Text)
    replica: Mapped[str | None] = mapped_column(Text)
    endpoint: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(Text)
    stream: Mapped[bool] = mapped_column(Boolean)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    tokens_reported: Mapped[bool] = mapped_column(Boolean)
    cost_nanos: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float] = mapped_column(Float)
    first_byte_ms: Mapped[float | None] = mapped_column(Float)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    adapter: Mapped[str | None] = mapped_column(Text)
    guardrails: Mapped[str | None] = mapped_column(Text)


ROLLUP_GRANULARITIES = ("hour", "day")


class UsageRollup(Base):
    """The usage ledger summed per hour or day and per team, key, model, adapter and deployment.

    Written only by ``repo.usage_rollups`` (the rollup service), which replaces whole buckets:
    a bucket's rows are deleted and summed again from ``usage_records`` (hours) or from the
    hours (days) in one transaction, so no uniqueness rule is needed to keep one row per
    group, and NULL dimensions (a key without a team, no adapter) group like any value.
    ``bucket`` is the UTC start of the hour or day. Rows with ``key_id = '*'`` are the same
    sums over all keys (per team, model, adapter, deployment), for reports that ask nothing
    per key. Reports read only these rows.
    """

    __tablename__ = "usage_rollups"
    __table_args__ = (
        CheckConstraint(_in("granularity", ROLLUP_GRANULARITIES), name="granularity"),
        Index(None, "granularity", "bucket"), Index(None, "team_id", "granularity", "bucket"),
        Index(None, "key_id", "granularity", "bucket"),
    )

    # BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is the rowid.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    granularity: Mapped[str] = mapped_column(Text)
    bucket: Mapped[datetime] = mapped_column()
    team_id: Mapped[str | None] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Text)
    adapter: Mapped[str | None] = mapped_column(Text)
    deployment: Mapped[str | None] = mapped_column(Text)
    requests: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_tokens: Mapped[int] = mapped_column(BigInteger)
    estimated_requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    cost_nanos: Mapped[int] = mapped_column(BigInteger)


class UsageRollupState(Base):
    """The rollup service's one row: how far the rollups are final, and its lock.

    ``closed_until``: every hour before it was summed after it ended (NULL: nothing yet);
    ``last_id``: the highest ``usage_records.id`` the rollups had seen (later rows are
    checked for late arrivals); ``refreshed_at``: the rollups hold the ledger as it was
    then; ``raw_since``: retention dropped the raw records before it. A step locks this row
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock) for its transaction.
    """

    __tablename__ = "usage_rollup_state"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    closed_until: Mapped[datetime | None] = mapped_column()
    last_id: Mapped[int] = mapped_column(BigInteger)
    refreshed_at: Mapped[datetime | None] = mapped_column()
    raw_since: Mapped[datetime | None] = mapped_column()
