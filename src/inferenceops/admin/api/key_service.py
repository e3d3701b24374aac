"""Admin service for API keys: list, read, create (secret shown once), revoke, rotate.

Secrets are made here (``platform.keys.new_secret``) and leave only in the
``KeyCreated`` response of the request that made them; the store keeps the
visible prefix and the keyed digest (``KeyHasher``), which is exactly what the
data plane's snapshot looks keys up by. Audit entries carry ``KeyOut`` (no
secret, no digest).

Who may do what to a key (see ``deps``): team owners read and revoke every
key of their team; members their own keys (``OWN``); platform admins all.

Issuing a key — creating one, or rotating one (which hands out a new secret
with the same power) — is narrower (``_check_may_issue``), because a key
speaks for its owner: a person issues keys only for themselves or for a
service account of a team they own; a platform admin for anyone. A key
without a team carries its owner's platform role, so only a platform admin
issues one, for themselves. A user's key for a team requires the user to be a
member of it. What the key may then do is decided at every use, from its
owner's standing at that moment (``platform.identity.key_power``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from inferenceops.admin.api import schemas as s
from inferenceops.admin.api.deps import Access, AdminContext
from inferenceops.admin.api.errors import Unprocessable
from inferenceops.admin.api.services import audit, page_of
from inferenceops.errors import PermissionDenied
from inferenceops.platform.keys import new_secret, visible_prefix
from inferenceops.store import repo
from inferenceops.store.records import ApiKeyRecord
from inferenceops.store.repo import admin_queries as q


class KeyRotation(BaseModel):
    """What a rotation changed, for the audit log: the old key (new expiry) and its successor."""

    old: s.KeyOut
    new: s.KeyOut


def _check_key(access: Access, key: ApiKeyRecord) -> None:
    access.check(key.team_id, f"API key {key.id!r}", owner_user_id=key.user_id, whole_team=False)


def _check_may_issue(access: Access, *, user_id: str | None, team_id: str | None) -> None:
    """Refuse (403) issuing a secret that would speak for someone the caller may not speak for.

    ``user_id`` is the key's owning user (None: a service account's key, whose team the
    caller must manage whole — checked by the caller with ``access.check``).
    """
    me = access.principal.user_id
    if user_id is None:
        return
    if team_id is None and user_id != me:
        raise PermissionDenied("A key without a team carries its owner's platform role: only "
                               "its owner can create or rotate it. Give the key a team_id.")
    if not access.principal.is_platform_admin and user_id != me:
        raise PermissionDenied("You may create or rotate keys only for yourself or for a "
                               "service account of a team you own")


async def list_keys(ctx: AdminContext, access: Access, *, team_id: str | None, user_id: str | None,
                    service_account_id: str | None, include_revoked: bool, limit: int,
                    after: str | None) -> s.Page[s.KeyOut]:
    """Everyone-readers filter freely. Others: ``team_id`` lists that team's keys (own keys only
    for members/viewers); without it, the caller's own keys."""
    me = access.principal.user_id
    if not access.everywhere:
        own_only = team_id is None or access.teams.get(team_id) != "team"
        if team_id is not None and team_id not in access.teams:
            access.check(team_id, f"team {team_id!r}")  # 404 (or 403 if visible)
        if own_only:
            if me is None or user_id not in (None, me) or service_account_id is not None:
                return s.Page(data=[], next_after=None)
            user_id = me
    async with ctx.db.read() as tx:
        page = await repo.list_api_keys(tx, team_id=team_id, user_id=user_id,
                                        service_account_id=service_account_id,
                                        include_revoked=include_revoked, limit=limit, after=after)
    if not access.everywhere:  # keys of the caller's in teams they no longer hold a role in
        page = type(page)(tuple(k for k in page.items if access.allows(
            k.team_id, owner_user_id=k.user_id, whole_team=False)), page.next_after)
    return page_of(page, s.KeyOut.of)


async def get_key(ctx: AdminContext, access: Access, key_id: str) -> s.KeyOut:
    async with ctx.db.read() as tx:
        key = await repo.get_api_key(tx, key_id)
    _check_key(access, key)
    return s.KeyOut.of(key)


async def create_key(ctx: AdminContext, access: Access, body: s.KeyCreate) -> s.KeyCreated:
    principal = access.principal
    user_id, account_id, team_id = body.user_id, body.service_account_id, body.team_id
    if user_id is not None and account_id is not None:
        raise Unprocessable("A key has one owner: give user_id or service_account_id, not both",
                            param="service_account_id")
    if user_id is None and account_id is None:
        if principal.user_id is None:
            raise Unprocessable("Name the key's owner (user_id or service_account_id)", param="user_id")
        user_id = principal.user_id
    if team_id is None and account_id is None and not access.everywhere:
        raise Unprocessable("team_id is required: say which of your teams the key is for", param="team_id")
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise Unprocessable("expires_at must be in the future", param="expires_at")
    secret = new_secret()
    async with ctx.db.transaction("creating an API key") as tx:
        if account_id is not None:
            account = await repo.get_service_account(tx, account_id)
            if team_id not in (None, account.team_id):
                raise Unprocessable(f"Service account {account_id!r} belongs to another team",
                                    param="team_id")
            team_id = account.team_id
            access.check(team_id, f"team {team_id!r}", seen_with="teams:read")
        else:
            access.check(team_id, "team" if team_id is None else f"team {team_id!r}",
                         owner_user_id=user_id, whole_team=False, seen_with="teams:read")
            assert user_id is not None
            _check_may_issue(access, user_id=user_id, team_id=team_id)
            await repo.get_user(tx, user_id)
            if team_id is not None:
                await repo.get_team(tx, team_id)
                if await q.get_membership(tx, team_id, user_id) is None:
                    raise Unprocessable(f"User {user_id!r} is not a member of team {team_id!r}",
                                        param="user_id")
        record = await repo.create_api_key(
            tx, name=body.name, prefix=visible_prefix(secret), digest=ctx.hasher.digest(secret),
            user_id=None if account_id is not None else user_id, service_account_id=account_id,
            team_id=team_id, scopes=body.scopes, allowed_models=body.allowed_models,
            expires_at=body.expires_at, background_only=body.background_only,
            created_by=principal.actor)
        await audit(tx, principal, "key.create", "api_key", record.id, after=s.KeyOut.of(record))
    return s.KeyCreated.with_secret(record, secret)


async def revoke_key(ctx: AdminContext, access: Access, key_id: str) -> s.KeyOut:
    async with ctx.db.transaction("revoking an API key") as tx:
        old = await repo.get_api_key(tx, key_id)
        _check_key(access, old)
        out = s.KeyOut.of(await repo.revoke_api_key(tx, key_id))
        await audit(tx, access.principal, "key.revoke", "api_key", key_id,
                    before=s.KeyOut.of(old), after=out)
    return out


async def rotate_key(ctx: AdminContext, access: Access, key_id: str, body: s.KeyRotate) -> s.KeyCreated:
    secret = new_secret()
    async with ctx.db.transaction("rotating an API key") as tx:
        old = await repo.get_api_key(tx, key_id)
        _check_key(access, old)
        _check_may_issue(access, user_id=old.user_id, team_id=old.team_id)
        new = await repo.rotate_api_key(tx, key_id, prefix=visible_prefix(secret),
                                        digest=ctx.hasher.digest(secret),
                                        overlap=timedelta(seconds=body.overlap_s),
                                        created_by=access.principal.actor)
        old_after = await repo.get_api_key(tx, key_id)
        await audit(tx, access.principal, "key.rotate", "api_key", key_id, before=s.KeyOut.of(old),
                    after=KeyRotation(old=s.KeyOut.of(old_after), new=s.KeyOut.of(new)))
    return s.KeyCreated.with_secret(new, secret)
