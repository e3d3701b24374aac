"""Guardrail policies and their attachments as set through the admin API (``platform.guardrails``).

``guardrail_policies``: one row per policy; ``name`` is unique and never changes, ``version``
goes up by one on every change of the rules or description (usage records and metrics name
``name@version``). ``rules`` is the JSON list of the platform file's rule objects, exactly
as ``guardrails.spec.RuleSpec`` reads them (the repository writes only what it validated).

``guardrail_attachments``: one row per (policy, subject). ``policy`` is a *name*, not a
foreign key: an attachment may name a policy of the platform file, which has no row here.
The subject follows the scope as the admission rules' do (``tables._subject_rule``):
``global`` names nothing, ``team`` a team id, ``key`` a key id (both go with their row, ON
DELETE CASCADE), ``model`` a model name (kept if the model goes: it applies again when a
model of that name comes back, as a limit on a model does).

Declared on ``tables.Base`` (``tables`` imports this module at its end); migration 0017.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from inferenceops.store import ids
from inferenceops.store.tables import Base, PortableJSON, _in, _subject_rule, utcnow

#: Where a policy may be attached (``platform.guardrails.SCOPES``; a test holds them equal).
ATTACH_SCOPES = ("global", "team", "model", "key")
ATTACH_SUBJECT_RULE = _subject_rule(
    {"global": (), "team": ("team_id",), "model": ("model",), "key": ("key_id",)},
    ("team_id", "model", "key_id"))


class GuardrailPolicy(Base):
    __tablename__ = "guardrail_policies"
    __table_args__ = (CheckConstraint("version > 0", name="version_positive"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True,
                                    default=lambda: ids.new_id(ids.GUARDRAIL_POLICY))
    name: Mapped[str] = mapped_column(Text, unique=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    description: Mapped[str] = mapped_column(Text, default="")
    rules: Mapped[list[dict[str, Any]]] = mapped_column(PortableJSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class GuardrailAttachment(Base):
    __tablename__ = "guardrail_attachments"
    __table_args__ = (
        CheckConstraint(_in("scope", ATTACH_SCOPES), name="scope"),
        CheckConstraint(ATTACH_SUBJECT_RULE, name="subject_columns"),
        UniqueConstraint("policy", "subject"),
        Index(None, "team_id"), Index(None, "key_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True,
                                    default=lambda: ids.new_id(ids.GUARDRAIL_ATTACHMENT))
    policy: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    model: Mapped[str | None] = mapped_column(Text)
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
