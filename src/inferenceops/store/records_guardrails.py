"""Plain records of the guardrail tables (``store.tables_guardrails``): what the repository returns.

Kept beside ``store.records`` rather than in it: they are read by the admin API and the
snapshot feed only. ``rules`` is the JSON list the platform file's ``guardrails.spec.RuleSpec``
reads; treat it as read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class GuardrailPolicyRecord:
    id: str
    name: str
    version: int
    description: str
    rules: tuple[dict[str, Any], ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class GuardrailAttachmentRecord:
    """A policy (by name) on the platform (``global``), a team, a model (by name) or a key."""

    id: str
    policy: str
    scope: str
    team_id: str | None
    model: str | None
    key_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredGuardrails:
    """Every stored policy and attachment, read together for a snapshot."""

    policies: tuple[GuardrailPolicyRecord, ...] = ()
    attachments: tuple[GuardrailAttachmentRecord, ...] = ()
