"""Reading the whole identity for the data plane's snapshot, in batches.

``load_identity`` reads every non-revoked key plus teams (with their body retention), users, service
accounts, memberships, grants, limits and budgets inside one read transaction (one snapshot:
REPEATABLE READ on PostgreSQL, a single SQLite read transaction), together
with the revision it corresponds to. Rows are streamed in batches
(server-side cursor on PostgreSQL, chunked cursor on SQLite) and the event
loop gets a turn between batches, so 100,000 keys load without long stalls.
Plain records only leave this module; nothing here writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from sqlalchemy import Select, Text, cast, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.platform.retention import NONE_MODE
from inferenceops.store.db import Database
from inferenceops.store.records import (
    ActiveKey,
    BudgetRecord,
    GrantRecord,
    IdentityData,
    LimitRecord,
    MembershipRecord,
    ServiceAccountRecord,
    TeamRecord,
    UserRecord,
)
from inferenceops.store.repo._common import revision
from inferenceops.store.tables_admission import Budget, Limit
from inferenceops.store.tables_identity import ApiKey, Grant, Membership, ServiceAccount, Team, User
from inferenceops.store.tables_retention import TeamRetention

T = TypeVar("T")


async def _stream(session: AsyncSession, stmt: Select[*tuple[Any, ...]], build: Callable[..., T],
                  batch_size: int) -> tuple[T, ...]:
    out: list[T] = []
    result = await session.stream(stmt.execution_options(yield_per=batch_size))
    async for rows in result.partitions(batch_size):
        out.extend(build(*row) for row in rows)
        await asyncio.sleep(0)  # the rows were converted on the loop: let others run
    return tuple(out)


class _KeyBuilder:
    """Row → ActiveKey, parsing each distinct JSON text once (keys share a few scope/model sets)."""

    __slots__ = ("_sets",)

    def __init__(self) -> None:
        self._sets: dict[str, frozenset[str]] = {}

    def _set(self, raw: str | None) -> frozenset[str] | None:
        if raw is None:
            return None
        found = self._sets.get(raw)
        if found is None:
            value = orjson.loads(raw)
            if value is None:  # a JSON null written by hand: same as SQL NULL
                return None
            found = self._sets[raw] = frozenset(value)
        return found

    def __call__(self, id: str, prefix: str, digest: bytes, team_id: str | None, user_id: str | None,
                 sa_id: str | None, scopes: str, allowed: str | None, expires_at: Any,
                 background_only: bool, lineage_id: str | None) -> ActiveKey:
        return ActiveKey(id, prefix, digest, team_id, user_id, sa_id, self._set(scopes) or frozenset(),
                         self._set(allowed), expires_at, bool(background_only), lineage_id)


async def load_identity(db: Database, batch_size: int = 5000) -> IdentityData:
    """Every live key, team, user, service account, membership, grant, limit and budget, at one revision."""
    async with db.read("loading the identity snapshot") as session:
        at = await revision(session)
        k = ApiKey.__table__.c  # Core columns: no ORM row processing for the big table
        # JSON read as text (CAST) and parsed once per distinct value by _KeyBuilder.
        keys = await _stream(session, select(
            k.id, k.prefix, k.digest, k.team_id, k.user_id, k.service_account_id,
            cast(k.scopes, Text), cast(k.allowed_models, Text), k.expires_at, k.background_only, k.lineage_id,
        ).where(k.revoked_at.is_(None)), _KeyBuilder(), batch_size)
        teams = await _stream(session, select(
            Team.id, Team.name, Team.weight, Team.created_at, Team.updated_at,
            func.coalesce(TeamRetention.mode, NONE_MODE), TeamRetention.days,
        ).outerjoin(TeamRetention, TeamRetention.team_id == Team.id).order_by(Team.name),
            TeamRecord, batch_size)
        users = await _stream(session, select(
            User.id, User.email, User.display_name, User.platform_role, User.disabled, User.created_at,
        ).order_by(User.email), UserRecord, batch_size)
        accounts = await _stream(session, select(
            ServiceAccount.id, ServiceAccount.team_id, ServiceAccount.name, ServiceAccount.created_at,
        ).order_by(ServiceAccount.id), ServiceAccountRecord, batch_size)
        memberships = await _stream(session, select(
            Membership.team_id, Membership.user_id, Membership.role, Membership.created_at,
        ).order_by(Membership.team_id, Membership.user_id), MembershipRecord, batch_size)
        grants = await _stream(session, select(Grant.team_id, Grant.model, Grant.created_at)
                               .order_by(Grant.team_id, Grant.model), GrantRecord, batch_size)
        limits = await _stream(session, select(
            Limit.id, Limit.scope, Limit.key_id, Limit.team_id, Limit.model, Limit.rpm, Limit.tpm,
            Limit.concurrency, Limit.created_at, Limit.updated_at).order_by(Limit.id),
            LimitRecord, batch_size)
        budgets = await _stream(session, select(
            Budget.id, Budget.scope, Budget.key_id, Budget.team_id, Budget.amount_nanos,
            Budget.currency, Budget.period, Budget.mode, Budget.created_at, Budget.updated_at,
        ).order_by(Budget.id), BudgetRecord, batch_size)
    return IdentityData(at, keys, teams, users, accounts, memberships, grants, limits, budgets)


async def is_empty(session: AsyncSession) -> bool:
    """True when the store has no users and no keys (bootstrap then creates the first admin)."""
    has_any = await session.execute(select(exists(select(User.id)) | exists(select(ApiKey.id))))
    return not has_any.scalar_one()
