"""Admin services for teams (weight, body retention), members, users, service accounts,
grants and the audit log.

Each function: check the caller's ``Access`` against the object, run the
store calls in one transaction, append exactly one audit entry for a
mutation (same transaction: the change and its record commit together, or
neither), and return an API schema. Keys live in ``key_service.py``.

Audit ``before``/``after`` are the API schemas as JSON — never secrets or
digests (the key schemas have neither). The audit source is the principal's
client address, followed by ``via <sign-in identity>`` for a person signed in
through OIDC or the auth proxy and linked to their user row (whose actor is
``user:<id>``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.admin.api import schemas as s
from inferenceops.admin.api.deps import Access, AdminContext
from inferenceops.admin.api.errors import Unprocessable
from inferenceops.admin.principal import AdminPrincipal
from inferenceops.errors import NotFound, PermissionDenied
from inferenceops.platform.retention import NONE_MODE, STORE, Retention
from inferenceops.store import errors as store_errors
from inferenceops.store import repo
from inferenceops.store.records import GrantRecord, UserRecord
from inferenceops.store.records import Page as StorePage
from inferenceops.store.repo import admin_queries as q
from inferenceops.store.repo import retention as retention_repo
from inferenceops.store.repo.audit import append_audit, list_audit

R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)


async def audit(tx: AsyncSession, principal: AdminPrincipal, action: str, target_type: str,
                target_id: str, *, before: BaseModel | None = None,
                after: BaseModel | None = None) -> None:
    """Record one mutation in the caller's transaction."""
    await append_audit(tx, actor=principal.actor, action=action, target_type=target_type,
                       target_id=target_id,
                       before=None if before is None else before.model_dump(mode="json"),
                       after=None if after is None else after.model_dump(mode="json"),
                       source=principal.audit_source)


def paginate(records: Iterable[R], cursor: Callable[[R], str], convert: Callable[[R], M],
             after: str | None, limit: int) -> s.Page[M]:
    """Keyset pagination of a short in-memory list, matching the store's (sorted by ``cursor``)."""
    ordered = sorted(records, key=cursor)
    if after is not None:
        ordered = [r for r in ordered if cursor(r) > after]
    chunk = ordered[:limit]
    more = len(ordered) > limit
    return s.Page(data=[convert(r) for r in chunk], next_after=cursor(chunk[-1]) if more else None)


def page_of(page: StorePage[R], convert: Callable[[R], M]) -> s.Page[M]:
    return s.Page(data=[convert(r) for r in page.items], next_after=page.next_after)


# ---- teams ------------------------------------------------------------------------------------

async def list_teams(ctx: AdminContext, access: Access, *, limit: int,
                     after: str | None) -> s.Page[s.TeamOut]:
    async with ctx.db.read() as tx:
        if access.everywhere:
            return page_of(await repo.list_teams(tx, limit=limit, after=after), s.TeamOut.of)
        teams = [await repo.get_team(tx, team_id) for team_id in access.whole_teams()]
    return paginate(teams, lambda t: t.name, s.TeamOut.of, after, limit)


async def get_team(ctx: AdminContext, access: Access, team_id: str) -> s.TeamOut:
    access.check(team_id, f"team {team_id!r}")
    async with ctx.db.read() as tx:
        return s.TeamOut.of(await repo.get_team(tx, team_id))


async def create_team(ctx: AdminContext, access: Access, body: s.TeamCreate) -> s.TeamOut:
    access.check(None, "teams")
    async with ctx.db.transaction("creating a team") as tx:
        team = await repo.create_team(tx, body.name, weight=body.weight)
        if body.retention != NONE_MODE:
            await retention_repo.set_retention(tx, team.id,
                                               Retention(body.retention, body.retention_days))
            team = await repo.get_team(tx, team.id)
        out = s.TeamOut.of(team)
        await audit(tx, access.principal, "team.create", "team", out.id, after=out)
    return out


async def update_team(ctx: AdminContext, access: Access, team_id: str, body: s.TeamPatch) -> s.TeamOut:
    """Weight and body retention; a retention that leaves ``store`` drops its days, and
    ``retention_days`` alone changes the days of a team that stores bodies."""
    access.check(team_id, f"team {team_id!r}")
    async with ctx.db.transaction("updating a team") as tx:
        before = s.TeamOut.of(await repo.get_team(tx, team_id))
        out = before
        if body.weight is not None:
            out = s.TeamOut.of(await repo.set_team_weight(tx, team_id, body.weight))
        sent = body.model_fields_set
        if "retention" in sent or "retention_days" in sent:
            mode = body.retention if body.retention is not None else before.retention
            days = body.retention_days if "retention_days" in sent else (
                before.retention_days if mode == STORE else None)
            try:
                wanted = Retention(mode, days)
            except ValueError as exc:
                raise store_errors.Invalid(str(exc), field="retention_days") from None
            await retention_repo.set_retention(tx, team_id, wanted)
            out = s.TeamOut.of(await repo.get_team(tx, team_id))
        await audit(tx, access.principal, "team.update", "team", team_id, before=before, after=out)
    return out


async def delete_team(ctx: AdminContext, access: Access, team_id: str) -> None:
    access.check(team_id, f"team {team_id!r}")
    async with ctx.db.transaction("deleting a team") as tx:
        before = s.TeamOut.of(await repo.get_team(tx, team_id))
        await repo.delete_team(tx, team_id)
        await audit(tx, access.principal, "team.delete", "team", team_id, before=before)


# ---- members ----------------------------------------------------------------------------------

async def list_members(ctx: AdminContext, access: Access, team_id: str, *, limit: int,
                       after: str | None) -> s.Page[s.MemberOut]:
    access.check(team_id, f"team {team_id!r}")
    async with ctx.db.read() as tx:
        await repo.get_team(tx, team_id)
        members = await repo.list_memberships(tx, team_id=team_id)
    return paginate(members, lambda m: m.user_id, s.MemberOut.of, after, limit)


def _refuse_unconsented(access: Access, team_id: str) -> None:
    """Only a platform admin puts someone in a team without their consent; owners invite."""
    if not access.everywhere:
        raise PermissionDenied(
            "Only a platform admin adds people to a team directly: invite them instead "
            f"(POST /admin/api/v1/teams/{team_id}/invitations); they join when they accept")


async def set_member(ctx: AdminContext, access: Access, team_id: str, user_id: str,
                     body: s.MemberSet) -> s.MemberOut:
    """Change a member's role; adding someone new this way is for platform admins only."""
    access.check(team_id, f"team {team_id!r}", seen_with="teams:read")
    async with ctx.db.transaction("setting a team member") as tx:
        await repo.get_team(tx, team_id)
        await repo.get_user(tx, user_id)
        old = await q.get_membership(tx, team_id, user_id)
        if old is None:
            _refuse_unconsented(access, team_id)
        out = s.MemberOut.of(await repo.set_membership(tx, team_id, user_id, body.role))
        await audit(tx, access.principal, "member.set", "membership", f"{team_id}/{user_id}",
                    before=None if old is None else s.MemberOut.of(old), after=out)
    return out


async def add_member(ctx: AdminContext, access: Access, team_id: str,
                     body: s.MemberAdd) -> tuple[s.MemberOut, bool]:
    """Add a user, named by id or by email, to the team (or set their role); True if added.

    Adding someone new is for platform admins; a team owner may set the role of
    someone who is a member already, and invites anyone else (``invitation_service``).
    """
    access.check(team_id, f"team {team_id!r}", seen_with="teams:read")
    async with ctx.db.transaction("adding a team member") as tx:
        await repo.get_team(tx, team_id)
        user = await find_user(tx, user_id=body.user_id, email=body.email)
        old = await q.get_membership(tx, team_id, user.id)
        if old is None:
            _refuse_unconsented(access, team_id)
        out = s.MemberOut.of(await repo.set_membership(tx, team_id, user.id, body.role))
        await audit(tx, access.principal, "member.set", "membership", f"{team_id}/{user.id}",
                    before=None if old is None else s.MemberOut.of(old), after=out)
    return out, old is None


async def find_user(tx: AsyncSession, *, user_id: str | None, email: str | None) -> UserRecord:
    """A user named by id or by email (exactly one).

    By email, so a team owner can name a colleague without reading the user list (which
    only platform roles may): an unknown email is 404 — to a caller who may manage the
    team's members, and only after that is checked.
    """
    if (user_id is None) == (email is None):
        raise Unprocessable("Name the user by user_id or by email (one of them)",
                            param="user_id" if user_id is None else "email")
    if email is None:
        assert user_id is not None
        return await repo.get_user(tx, user_id)
    try:
        return await repo.get_user_by_email(tx, email)
    except store_errors.NotFound:
        raise NotFound("No user has this email; a platform admin can create one "
                       "(POST /users)") from None


async def remove_member(ctx: AdminContext, access: Access, team_id: str, user_id: str) -> None:
    access.check(team_id, f"team {team_id!r}", seen_with="teams:read")
    async with ctx.db.transaction("removing a team member") as tx:
        old = await q.get_membership(tx, team_id, user_id)
        if old is None:
            raise store_errors.NotFound(f"user {user_id!r} is not a member of team {team_id!r}")
        await repo.remove_membership(tx, team_id, user_id)
        await audit(tx, access.principal, "member.remove", "membership", f"{team_id}/{user_id}",
                    before=s.MemberOut.of(old))


# ---- users ------------------------------------------------------------------------------------

async def list_users(ctx: AdminContext, access: Access, *, limit: int,
                     after: str | None) -> s.Page[s.UserOut]:
    access.check(None, "users")
    async with ctx.db.read() as tx:
        return page_of(await repo.list_users(tx, limit=limit, after=after), s.UserOut.of)


async def get_user(ctx: AdminContext, access: Access, user_id: str) -> s.UserOut:
    access.check(None, f"user {user_id!r}")
    async with ctx.db.read() as tx:
        return s.UserOut.of(await repo.get_user(tx, user_id))


async def create_user(ctx: AdminContext, access: Access, body: s.UserCreate) -> s.UserOut:
    access.check(None, "users")
    async with ctx.db.transaction("creating a user") as tx:
        out = s.UserOut.of(await repo.create_user(tx, body.email, display_name=body.display_name,
                                                  platform_role=body.platform_role))
        await audit(tx, access.principal, "user.create", "user", out.id, after=out)
    return out


async def update_user(ctx: AdminContext, access: Access, user_id: str, body: s.UserPatch) -> s.UserOut:
    access.check(None, f"user {user_id!r}")
    sent = body.model_fields_set
    async with ctx.db.transaction("updating a user") as tx:
        before = s.UserOut.of(await repo.get_user(tx, user_id))
        if user_id == access.principal.user_id and (
                ("disabled" in sent and body.disabled != before.disabled) or
                ("platform_role" in sent and body.platform_role != before.platform_role)):
            # Nobody changes their own standing: a disabled person must not re-enable
            # themselves, and an admin must not lock the platform out by accident.
            raise PermissionDenied("You cannot change your own disabled flag or platform role; "
                                   "another platform admin can")
        record = None
        if "platform_role" in sent:
            record = await repo.set_platform_role(tx, user_id, body.platform_role)
        if "disabled" in sent:
            record = await repo.set_user_disabled(tx, user_id, body.disabled)
        out = before if record is None else s.UserOut.of(record)
        await audit(tx, access.principal, "user.update", "user", user_id, before=before, after=out)
    return out


# ---- service accounts -------------------------------------------------------------------------

async def list_service_accounts(ctx: AdminContext, access: Access, team_id: str | None, *, limit: int,
                                after: str | None) -> s.Page[s.ServiceAccountOut]:
    async with ctx.db.read() as tx:
        if team_id is None and access.everywhere:
            return page_of(await q.list_all_service_accounts(tx, limit=limit, after=after),
                           s.ServiceAccountOut.of)
        teams: Sequence[str] = sorted(access.whole_teams()) if team_id is None else [team_id]
        if team_id is not None:
            access.check(team_id, f"team {team_id!r}")
            await repo.get_team(tx, team_id)
        accounts = [a for t in teams for a in await repo.list_service_accounts(tx, t)]
    return paginate(accounts, lambda a: a.id, s.ServiceAccountOut.of, after, limit)


async def get_service_account(ctx: AdminContext, access: Access, account_id: str) -> s.ServiceAccountOut:
    async with ctx.db.read() as tx:
        account = await repo.get_service_account(tx, account_id)
    access.check(account.team_id, f"service account {account_id!r}")
    return s.ServiceAccountOut.of(account)


async def create_service_account(ctx: AdminContext, access: Access,
                                 body: s.ServiceAccountCreate) -> s.ServiceAccountOut:
    access.check(body.team_id, f"team {body.team_id!r}", seen_with="teams:read")
    async with ctx.db.transaction("creating a service account") as tx:
        await repo.get_team(tx, body.team_id)
        out = s.ServiceAccountOut.of(await repo.create_service_account(tx, body.team_id, body.name))
        await audit(tx, access.principal, "service_account.create", "service_account", out.id, after=out)
    return out


# ---- grants -----------------------------------------------------------------------------------

def _grant_cursor(g: GrantRecord) -> str:
    return f"{g.team_id}{q.GRANT_CURSOR_SEP}{g.model}"


async def list_grants(ctx: AdminContext, access: Access, team_id: str | None, *, limit: int,
                      after: str | None) -> s.Page[s.GrantOut]:
    async with ctx.db.read() as tx:
        if team_id is None and access.everywhere:
            return page_of(await q.list_all_grants(tx, limit=limit, after=after), s.GrantOut.of)
        teams: Sequence[str] = sorted(access.whole_teams()) if team_id is None else [team_id]
        if team_id is not None:
            access.check(team_id, f"team {team_id!r}")
            await repo.get_team(tx, team_id)
        grants = [g for t in teams for g in await repo.list_grants(tx, t)]
    return paginate(grants, _grant_cursor, s.GrantOut.of, after, limit)


async def put_grant(ctx: AdminContext, access: Access, team_id: str, model: str) -> s.GrantOut:
    access.check(team_id, f"team {team_id!r}")
    async with ctx.db.transaction("granting a model") as tx:
        await repo.get_team(tx, team_id)
        existing = {g.model: g for g in await repo.list_grants(tx, team_id)}
        await repo.grant(tx, team_id, model)
        found = {g.model: g for g in await repo.list_grants(tx, team_id)}.get(model.strip())
        assert found is not None
        out = s.GrantOut.of(found)
        old = existing.get(out.model)
        await audit(tx, access.principal, "grant.put", "grant", f"{team_id}/{out.model}",
                    before=None if old is None else s.GrantOut.of(old), after=out)
    return out


async def delete_grant(ctx: AdminContext, access: Access, team_id: str, model: str) -> None:
    access.check(team_id, f"team {team_id!r}")
    async with ctx.db.transaction("revoking a grant") as tx:
        old = {g.model: g for g in await repo.list_grants(tx, team_id)}.get(model)
        await repo.revoke_grant(tx, team_id, model)
        assert old is not None
        await audit(tx, access.principal, "grant.delete", "grant", f"{team_id}/{model}",
                    before=s.GrantOut.of(old))


# ---- audit ------------------------------------------------------------------------------------

async def list_audit_entries(
    ctx: AdminContext, access: Access, *, limit: int, after: str | None, actor: str | None,
    action: str | None, target_type: str | None, target_id: str | None,
    since: datetime | None, until: datetime | None,
) -> s.Page[s.AuditOut]:
    access.check(None, "audit log")
    if after is not None and not after.isdigit():
        raise Unprocessable(f"after must be an audit sequence number, not {after!r}", param="after")
    async with ctx.db.read() as tx:
        page = await list_audit(tx, after_seq=None if after is None else int(after), limit=limit,
                                actor=actor, action=action, target_type=target_type,
                                target_id=target_id, since=since, until=until)
    return s.Page(data=[s.AuditOut.of(e) for e in page.items],
                              next_after=None if page.next_after is None else str(page.next_after))
