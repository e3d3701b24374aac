"""Reading usage records one by one, newest first: the auditors' question "which requests did a
guardrail block, redact or flag?". Reads only.

Filters narrow a time range (``at``, the ledger's one index) by team, key, model and the
guardrail outcome kept in ``usage_records.guardrails`` (``pii@2,cards@1 card:block
email:redact×2``: the policies, then each entity type's action — never the text). Outcome
filters are ``LIKE`` on that text, anchored on its separators: an entity follows a space
and precedes a colon, an action follows a colon, a policy label is in the first word,
before an ``@``. The values are checked by the caller (known entity types and actions, a
policy name's characters) and escaped here all the same.

The caller's reach is part of the query (``UsageReach``): the platform's roles read every
record; a team owner those of their teams; a member those of their own keys (a key's
``principal_id`` is its owner).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.outbox.records import UsageRecord
from inferenceops.store.errors import Invalid
from inferenceops.store.records import Page
from inferenceops.store.repo._common import MAX_PAGE
from inferenceops.store.tables_usage import UsageRow


@dataclass(frozen=True, slots=True)
class UsageReach:
    """Whose records a caller reads: ``everything``, else the ``teams`` they own and, in
    ``own_teams``, the keys of ``owner`` (a user id)."""

    everything: bool = False
    teams: Collection[str] = ()
    own_teams: Collection[str] = ()
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class StoredUsage:
    id: int
    record: UsageRecord


@dataclass(frozen=True, slots=True)
class OutcomeFilter:
    """What a record's guardrail outcome must show; None: anything."""

    action: str | None = None
    entity: str | None = None
    policy: str | None = None
    guarded: bool = False  # only records where a policy found something


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _outcome(column: Any, outcome: OutcomeFilter) -> list[Any]:
    clauses = []
    if outcome.guarded or outcome.action or outcome.entity or outcome.policy:
        clauses.append(column.is_not(None))
    if outcome.entity is not None or outcome.action is not None:
        entity = f" {_like(outcome.entity)}:" if outcome.entity is not None else ":"
        action = _like(outcome.action) if outcome.action is not None else ""
        clauses.append(column.like(f"%{entity}{action}%", escape="\\"))
    if outcome.policy is not None:
        name = _like(outcome.policy)
        clauses.append(or_(column.like(f"{name}@%", escape="\\"),
                           column.like(f"%,{name}@%", escape="\\")))
    return clauses


def _reach(reach: UsageReach) -> Any:
    if reach.everything:
        return None
    parts: list[Any] = []
    if reach.teams:
        parts.append(UsageRow.team_id.in_(list(reach.teams)))
    if reach.own_teams and reach.owner is not None:
        parts.append(and_(UsageRow.team_id.in_(list(reach.own_teams)),
                          UsageRow.principal_id == reach.owner))
    return or_(*parts) if parts else false()


async def list_records(session: AsyncSession, *, since: datetime, until: datetime,
                       reach: UsageReach, outcome: OutcomeFilter = OutcomeFilter(),
                       team_id: str | None = None, key_id: str | None = None,
                       model: str | None = None, limit: int = 100,
                       before: int | None = None) -> Page[StoredUsage]:
    """Records in [since, until) matching every filter, newest first; ``before``: the previous
    page's ``next_after`` (the last id it showed)."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}, not {limit}", field="limit")
    stmt = select(UsageRow).where(UsageRow.at >= since, UsageRow.at < until,
                                  *_outcome(UsageRow.guardrails, outcome))
    scope = _reach(reach)
    if scope is not None:
        stmt = stmt.where(scope)
    for column, value in ((UsageRow.team_id, team_id), (UsageRow.key_id, key_id),
                          (UsageRow.model, model)):
        if value is not None:
            stmt = stmt.where(column == value)
    if before is not None:
        stmt = stmt.where(UsageRow.id < before)
    rows = list((await session.execute(stmt.order_by(UsageRow.id.desc()).limit(limit))).scalars())
    items = tuple(StoredUsage(r.id, _record(r)) for r in rows)
    return Page(items, str(items[-1].id) if len(items) == limit else None)


def _record(r: UsageRow) -> UsageRecord:
    return UsageRecord(
        r.request_id, r.at.timestamp(), r.key_id, r.team_id, r.principal_id, r.principal_kind,
        r.model, r.deployment, r.replica, r.endpoint, r.priority, r.stream, r.prompt_tokens,
        r.completion_tokens, r.tokens_reported, r.cost_nanos, r.status, r.error_code,
        r.latency_ms, r.first_byte_ms, r.cached_tokens, r.adapter, r.guardrails)
