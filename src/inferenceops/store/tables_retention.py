"""Body retention: each team's setting, and the bodies retained for teams that opted in.

``team_retention`` holds a row only for a team whose retention is not the default
(``none``): ``store`` with its days, or ``zero``; it goes with its team.

``retained_bodies`` holds a request and its answer, redacted, for teams whose retention is
``store`` (``platform.retention``); each row is deleted by the retention sweep once
``expires_at`` passes (or sooner, when the team's retention changes). No foreign keys,
like the usage ledger: a body under review outlives the key that sent it, and a deleted
team's rows are left to the sweep. Read by team and time for the compliance export.
Declared on ``tables.Base`` (``tables`` imports this module at its end).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inferenceops.store.tables import Base, utcnow

#: The mode, and days exactly for ``store`` (the 0018 migration spells the same text out).
RETENTION_RULE = ("(mode = 'zero' AND days IS NULL) OR "
                  "(mode = 'store' AND days BETWEEN 1 AND 3650)")


class TeamRetention(Base):
    __tablename__ = "team_retention"
    __table_args__ = (CheckConstraint(RETENTION_RULE, name="mode_days"),)

    team_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    mode: Mapped[str] = mapped_column(Text)
    days: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RetainedBody(Base):
    __tablename__ = "retained_bodies"
    __table_args__ = (Index(None, "expires_at"), Index(None, "team_id", "at"))

    # BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is the rowid.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    team_id: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Text)
    endpoint: Mapped[str] = mapped_column(Text)
    stream: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[int] = mapped_column(Integer)
    #: The request's JSON and the answer as the caller got it, every built-in entity redacted
    #: (a stream's answer: its text per choice, ``retention.capture``).
    request: Mapped[str] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(Text)
    #: Whether either side was cut at the configured size (``retained_body_max_bytes``).
    truncated: Mapped[bool] = mapped_column(Boolean)
