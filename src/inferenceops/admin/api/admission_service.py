"""Admin services for admission rules: rate limits, budgets (and the team weight lives in ``services``).

Same shape as ``services``: check the caller's ``Access``, run the store calls
in one transaction, append one audit entry per mutation (``before`` the
replaced or deleted rule, ``after`` the new one), return API schemas.

Who sees a rule (``deps``): platform roles with the permission, everything.
Team roles: a team's own rules (team, team on a model) where they hold any
extent, and key rules as they may see the key (owners: every key of the
team; members: their own keys). Model-wide rules are for platform roles
only. A rule the caller may not read is a 404, as if it did not exist.
Writing is for platform roles (``check(None, …)``): no team raises its own limits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.admin.api import schemas as s
from inferenceops.admin.api.deps import TEAM, Access, AdminContext
from inferenceops.admin.api.errors import Unprocessable
from inferenceops.admin.api.services import audit, page_of, paginate
from inferenceops.errors import NotFound
from inferenceops.store import repo
from inferenceops.store.records import ApiKeyRecord, BudgetRecord, LimitRecord
from inferenceops.store.records import Page as StorePage
from inferenceops.store.repo._common import MAX_PAGE

R = TypeVar("R")
Rule = TypeVar("Rule", LimitRecord, BudgetRecord)


async def _all(fetch: Callable[[str | None], Awaitable[StorePage[R]]]) -> list[R]:
    """Every item of a store listing, page by page (a team's rules, a person's keys: short)."""
    items: list[R] = []
    after: str | None = None
    while True:
        got = await fetch(after)
        items.extend(got.items)
        if got.next_after is None:
            return items
        after = got.next_after


async def _may_read(tx: AsyncSession, access: Access, rule: LimitRecord | BudgetRecord) -> bool:
    if access.everywhere:
        return True
    if rule.key_id is not None:
        key = await repo.get_api_key(tx, rule.key_id)
        return access.allows(key.team_id, owner_user_id=key.user_id, whole_team=False)
    return rule.team_id is not None and rule.team_id in access.teams


async def _visible(tx: AsyncSession, access: Access, team_id: str | None,
                   fetch: Callable[[str, str | None], Awaitable[StorePage[Rule]]]) -> list[Rule]:
    """The rules a team-role holder may read, of ``team_id`` or of each team they hold a role in."""
    if team_id is not None and team_id not in access.teams:
        access.check(team_id, f"team {team_id!r}")  # 404: not a team of theirs
    teams: Sequence[str] = [team_id] if team_id is not None else sorted(access.teams)
    found: dict[str, Rule] = {}
    for team in teams:
        rules = await _all(partial(fetch, team))
        mine: set[str] | None = None  # None: every key of the team
        if access.teams[team] != TEAM:
            mine = set()
            if (me := access.principal.user_id) is not None:
                mine = {k.id for k in await _all(partial(_own_keys, tx, team, me))}
        found.update((r.id, r) for r in rules if r.key_id is None or mine is None or r.key_id in mine)
    return list(found.values())


async def _own_keys(tx: AsyncSession, team_id: str, user_id: str,
                    after: str | None) -> StorePage[ApiKeyRecord]:
    return await repo.list_api_keys(tx, team_id=team_id, user_id=user_id, include_revoked=True,
                                    limit=MAX_PAGE, after=after)


async def _check_subject_readable(tx: AsyncSession, access: Access,
                                  rule: LimitRecord | BudgetRecord, what: str) -> None:
    if not await _may_read(tx, access, rule):
        raise NotFound(f"No {what}")


# ---- limits -----------------------------------------------------------------------------------

async def list_limits(ctx: AdminContext, access: Access, *, scope: str | None, team_id: str | None,
                      key_id: str | None, model: str | None, limit: int,
                      after: str | None) -> s.Page[s.LimitOut]:
    async with ctx.db.read() as tx:
        if access.everywhere:
            if team_id is not None:
                await repo.get_team(tx, team_id)  # an unknown team is a 404, not an empty list
            return page_of(await repo.list_limits(tx, scope=scope, team_id=team_id, key_id=key_id,
                                                  model=model, limit=limit, after=after), s.LimitOut.of)
        rules = await _visible(tx, access, team_id, lambda team, page_after: repo.list_limits(
            tx, scope=scope, team_id=team, key_id=key_id, model=model, limit=MAX_PAGE,
            after=page_after))
    return paginate(rules, lambda r: r.id, s.LimitOut.of, after, limit)


async def get_limit(ctx: AdminContext, access: Access, limit_id: str) -> s.LimitOut:
    async with ctx.db.read() as tx:
        rule = await repo.get_limit(tx, limit_id)
        await _check_subject_readable(tx, access, rule, f"limit {limit_id!r}")
    return s.LimitOut.of(rule)


async def set_limit(ctx: AdminContext, access: Access, body: s.LimitSet) -> tuple[s.LimitOut, bool]:
    """Create or replace the subject's limit; returns (it, whether it was created)."""
    access.check(None, "limits")
    subject: dict[str, Any] = {"scope": body.scope.value, "key_id": body.key_id,
                               "team_id": body.team_id, "model": body.model}
    async with ctx.db.transaction("setting a limit") as tx:
        old = await repo.find_limit(tx, **subject)
        record, created = await repo.set_limit(tx, **subject, rpm=body.rpm, tpm=body.tpm,
                                               concurrency=body.concurrency)
        out = s.LimitOut.of(record)
        await audit(tx, access.principal, "limit.set", "limit", out.id,
                    before=None if old is None else s.LimitOut.of(old), after=out)
    return out, created


async def delete_limit(ctx: AdminContext, access: Access, limit_id: str) -> None:
    access.check(None, "limits")
    async with ctx.db.transaction("deleting a limit") as tx:
        before = s.LimitOut.of(await repo.get_limit(tx, limit_id))
        await repo.delete_limit(tx, limit_id)
        await audit(tx, access.principal, "limit.delete", "limit", limit_id, before=before)


# ---- budgets ----------------------------------------------------------------------------------

async def list_budgets(ctx: AdminContext, access: Access, *, scope: str | None, team_id: str | None,
                       key_id: str | None, period: str | None, limit: int,
                       after: str | None) -> s.Page[s.BudgetOut]:
    async with ctx.db.read() as tx:
        if access.everywhere:
            if team_id is not None:
                await repo.get_team(tx, team_id)  # an unknown team is a 404, not an empty list
            return page_of(await repo.list_budgets(tx, scope=scope, team_id=team_id, key_id=key_id,
                                                   period=period, limit=limit, after=after),
                           s.BudgetOut.of)
        rules = await _visible(tx, access, team_id, lambda team, page_after: repo.list_budgets(
            tx, scope=scope, team_id=team, key_id=key_id, period=period, limit=MAX_PAGE,
            after=page_after))
    return paginate(rules, lambda r: r.id, s.BudgetOut.of, after, limit)


async def get_budget(ctx: AdminContext, access: Access, budget_id: str) -> s.BudgetOut:
    async with ctx.db.read() as tx:
        rule = await repo.get_budget(tx, budget_id)
        await _check_subject_readable(tx, access, rule, f"budget {budget_id!r}")
    return s.BudgetOut.of(rule)


async def set_budget(ctx: AdminContext, access: Access, body: s.BudgetSet) -> tuple[s.BudgetOut, bool]:
    """Create or replace the subject's budget for the period; returns (it, whether it was created)."""
    access.check(None, "budgets")
    currency = body.currency or ctx.currency
    if currency != ctx.currency:
        raise Unprocessable(f"This platform keeps its books in {ctx.currency}; a budget in "
                            f"{currency} cannot be enforced. Give the amount in {ctx.currency}.",
                            param="currency")
    subject: dict[str, Any] = {"scope": body.scope, "key_id": body.key_id, "team_id": body.team_id}
    async with ctx.db.transaction("setting a budget") as tx:
        old = await repo.find_budget(tx, **subject, period=body.period.value)
        record, created = await repo.set_budget(tx, **subject, amount_nanos=body.amount_nanos,
                                                currency=currency, period=body.period.value,
                                                mode=body.mode)
        out = s.BudgetOut.of(record)
        await audit(tx, access.principal, "budget.set", "budget", out.id,
                    before=None if old is None else s.BudgetOut.of(old), after=out)
    return out, created


async def delete_budget(ctx: AdminContext, access: Access, budget_id: str) -> None:
    access.check(None, "budgets")
    async with ctx.db.transaction("deleting a budget") as tx:
        before = s.BudgetOut.of(await repo.get_budget(tx, budget_id))
        await repo.delete_budget(tx, budget_id)
        await audit(tx, access.principal, "budget.delete", "budget", budget_id, before=before)
