"""Operators' admission rules: rate limits and budgets, each on one subject.

The scope and period values are spelled out here, as the CHECK constraints are (a test keeps
them equal to ``platform.policy``'s enums). Declared on ``tables.Base`` (``tables`` imports
this module at its end); migration 0002.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from inferenceops.store import ids
from inferenceops.store.tables import Base, _in, _subject_rule, utcnow

# Admission values. Spelled out (not derived from ``platform.policy``): a CHECK is part of the
# schema and changes only with a migration; a test keeps these equal to the policy's enums.
LIMIT_SCOPES = ("key", "team", "model", "team_model")
BUDGET_SCOPES = ("team", "key")
PERIODS = ("daily", "weekly", "monthly", "lifetime")
BUDGET_MODES = ("hard", "soft")

#: Which subject columns each scope sets (the 0002 migration spells the same CHECK text out).
LIMIT_SUBJECT_RULE = _subject_rule(
    {"key": ("key_id",), "team": ("team_id",), "model": ("model",),
     "team_model": ("team_id", "model")}, ("key_id", "team_id", "model"))
BUDGET_SUBJECT_RULE = _subject_rule({"team": ("team_id",), "key": ("key_id",)}, ("key_id", "team_id"))


class Limit(Base):
    """An operator's rate limit on one subject (a key, a team, a model, or a team on a model).

    ``subject`` is derived by the repository from the scope and its columns
    (``key:<id>``, ``team:<id>``, ``model:<name>``, ``team_model:<id>/<name>``);
    its uniqueness is what makes "one limit per subject" hold under concurrency.
    """

    __tablename__ = "limits"
    __table_args__ = (
        CheckConstraint(_in("scope", LIMIT_SCOPES), name="scope"),
        CheckConstraint(LIMIT_SUBJECT_RULE, name="subject_columns"),
        CheckConstraint("rpm IS NULL OR rpm > 0", name="rpm_positive"),
        CheckConstraint("tpm IS NULL OR tpm > 0", name="tpm_positive"),
        CheckConstraint("concurrency IS NULL OR concurrency > 0", name="concurrency_positive"),
        CheckConstraint("rpm IS NOT NULL OR tpm IS NOT NULL OR concurrency IS NOT NULL",
                        name="some_limit"),
        Index(None, "key_id"), Index(None, "team_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: ids.new_id(ids.LIMIT))
    scope: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text, unique=True)
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    model: Mapped[str | None] = mapped_column(Text)
    rpm: Mapped[int | None] = mapped_column(BigInteger)
    tpm: Mapped[int | None] = mapped_column(BigInteger)
    concurrency: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Budget(Base):
    """Money a team or a key may spend per period, in nano-units of ``currency``.

    One budget per (subject, period): a team may have a daily and a monthly one.
    """

    __tablename__ = "budgets"
    __table_args__ = (
        CheckConstraint(_in("scope", BUDGET_SCOPES), name="scope"),
        CheckConstraint(BUDGET_SUBJECT_RULE, name="subject_columns"),
        CheckConstraint("amount_nanos > 0", name="amount_positive"),
        CheckConstraint(_in("period", PERIODS), name="period"),
        CheckConstraint(_in("mode", BUDGET_MODES), name="mode"),
        UniqueConstraint("subject", "period"),
        Index(None, "key_id"), Index(None, "team_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: ids.new_id(ids.BUDGET))
    scope: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    amount_nanos: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    period: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
