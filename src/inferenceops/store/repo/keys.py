"""API keys: create, read, list, revoke, rotate (with an overlap window), record last use.

The store never sees a key's secret: callers pass the visible ``prefix`` and
the keyed ``digest`` (``platform.keys.KeyHasher``). A key has exactly one owner
— a user or a service account — enforced here and by a CHECK in the schema.
Revoked keys stay (for audit) but leave the snapshot. Mutations bump the
revision, except ``touch_last_used``: last use is not part of the snapshot,
and bumping on every usage flush would make replicas rebuild constantly.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import Conflict, Invalid, NotFound, translating
from inferenceops.store.records import ApiKeyRecord, Page
from inferenceops.store.repo._common import bump_revision, check_name, page, sorted_unique
from inferenceops.store.repo.admission import copy_key_rules
from inferenceops.store.tables import utcnow
from inferenceops.store.tables_identity import SCOPES, ApiKey, ServiceAccount

DIGEST_BYTES = 32
_TOUCH_CHUNK = 500


def api_key_record(row: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(
        row.id, row.name, row.prefix, bytes(row.digest), row.team_id, row.user_id,
        row.service_account_id, frozenset(row.scopes),
        None if row.allowed_models is None else frozenset(row.allowed_models),
        row.created_at, row.expires_at, row.revoked_at, row.last_used_at, row.rotated_from_id,
        row.background_only, row.created_by)


def _check_digest(digest: bytes) -> bytes:
    if not isinstance(digest, bytes) or len(digest) != DIGEST_BYTES:
        raise Invalid(f"a key digest is {DIGEST_BYTES} raw bytes (HMAC-SHA256), not {digest!r:.40}")
    return digest


def _check_scopes(scopes: Iterable[str]) -> list[str]:
    values = sorted_unique(scopes)
    unknown = [s for s in values if s not in SCOPES]
    if unknown or not values:
        raise Invalid(f"key scopes must be a non-empty subset of {', '.join(SCOPES)}; got {values}")
    return values


async def create_api_key(
    session: AsyncSession, *, name: str, prefix: str, digest: bytes,
    user_id: str | None = None, service_account_id: str | None = None, team_id: str | None = None,
    scopes: Iterable[str] = ("inference",), allowed_models: Iterable[str] | None = None,
    expires_at: datetime | None = None, now: datetime | None = None, background_only: bool = False,
    created_by: str | None = None,
) -> ApiKeyRecord:
    """Store a key owned by exactly one of ``user_id`` / ``service_account_id``.

    A service account's key belongs to the account's team (``team_id`` may be
    omitted; a different one is ``Invalid``). ``Conflict`` if the digest exists.
    A ``background_only`` key's requests always queue as background work.
    ``created_by`` names the actor creating it (for operators; the audit log has it too).
    """
    if (user_id is None) == (service_account_id is None):
        raise Invalid("a key is owned by exactly one of a user or a service account")
    if service_account_id is not None:
        account = await session.get(ServiceAccount, service_account_id)
        if account is None:
            raise NotFound(f"no service account with id {service_account_id!r}")
        if team_id not in (None, account.team_id):
            raise Invalid(f"service account {service_account_id!r} belongs to team "
                          f"{account.team_id!r}, not {team_id!r}")
        team_id = account.team_id
    key = ApiKey(
        name=name.strip(), prefix=check_name("a key prefix", prefix), digest=_check_digest(digest),
        user_id=user_id, service_account_id=service_account_id, team_id=team_id,
        scopes=_check_scopes(scopes),
        allowed_models=None if allowed_models is None else sorted_unique(allowed_models),
        created_at=now or utcnow(), expires_at=expires_at, background_only=bool(background_only),
        created_by=created_by,
    )
    with translating(f"creating key {prefix!r}"):
        session.add(key)
        await session.flush()
    await bump_revision(session)
    return api_key_record(key)


async def get_api_key(session: AsyncSession, key_id: str) -> ApiKeyRecord:
    return api_key_record(await _get(session, key_id, lock=False))


async def _get(session: AsyncSession, key_id: str, *, lock: bool) -> ApiKey:
    key = await session.get(ApiKey, key_id, with_for_update=lock or None)
    if key is None:
        raise NotFound(f"no API key with id {key_id!r}")
    return key


async def list_api_keys(
    session: AsyncSession, *, team_id: str | None = None, user_id: str | None = None,
    service_account_id: str | None = None, include_revoked: bool = False,
    limit: int = 100, after: str | None = None,
) -> Page[ApiKeyRecord]:
    """Keys matching every filter given, ordered by id; ``after`` is the previous page's last id."""
    stmt = select(ApiKey)
    if team_id is not None:
        stmt = stmt.where(ApiKey.team_id == team_id)
    if user_id is not None:
        stmt = stmt.where(ApiKey.user_id == user_id)
    if service_account_id is not None:
        stmt = stmt.where(ApiKey.service_account_id == service_account_id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return await page(session, stmt, ApiKey.id, after, limit, api_key_record, lambda k: k.id)


async def revoke_api_key(session: AsyncSession, key_id: str, *, now: datetime | None = None) -> ApiKeyRecord:
    """Revoke a key now. Revoking a revoked key changes nothing (and bumps nothing)."""
    key = await _get(session, key_id, lock=True)
    if key.revoked_at is None:
        key.revoked_at = now or utcnow()
        await session.flush()
        await bump_revision(session)
    return api_key_record(key)


async def rotate_api_key(
    session: AsyncSession, key_id: str, *, prefix: str, digest: bytes, overlap: timedelta,
    now: datetime | None = None, created_by: str | None = None,
) -> ApiKeyRecord:
    """Replace a key with a new secret; both work until ``now + overlap``, then only the new one.

    The new key copies the old one's name, owner, team, scopes, model list,
    expiry and ``background_only``, records ``rotated_from_id``, and gets copies of
    the old key's limit and budgets (so a rotation never sheds them) and its
lineage (so their counters carry on rather than restart). The old key's ``expires_at`` is
    pulled in to ``now + overlap`` unless it already ends sooner. A revoked or
    expired key cannot be rotated (``Conflict``). ``created_by`` is the actor rotating it.
    """
    if overlap < timedelta(0):
        raise Invalid(f"the rotation overlap must not be negative, not {overlap}")
    now = now or utcnow()
    old = await _get(session, key_id, lock=True)
    if old.revoked_at is not None:
        raise Conflict(f"key {key_id!r} is revoked and cannot be rotated; create a new key instead")
    if old.expires_at is not None and old.expires_at <= now:
        # Its successor would copy the expiry and be born dead; a lapsed key stays lapsed.
        raise Conflict(f"key {key_id!r} has expired and cannot be rotated; create a new key instead")
    new = ApiKey(
        name=old.name, prefix=check_name("a key prefix", prefix), digest=_check_digest(digest),
        team_id=old.team_id, user_id=old.user_id, service_account_id=old.service_account_id,
        scopes=list(old.scopes),
        allowed_models=None if old.allowed_models is None else list(old.allowed_models),
        created_at=now, expires_at=old.expires_at, rotated_from_id=old.id,
        background_only=old.background_only, lineage_id=old.lineage_id or old.id,
        created_by=created_by,
    )
    cutoff = now + overlap
    if old.expires_at is None or old.expires_at > cutoff:
        old.expires_at = cutoff
    with translating(f"rotating key {key_id!r}"):
        session.add(new)
        await session.flush()
    await copy_key_rules(session, old.id, new.id)
    await bump_revision(session)
    return api_key_record(new)


async def touch_last_used(session: AsyncSession, key_ids: Iterable[str], at: datetime) -> int:
    """Record that keys were used at ``at`` (never moving ``last_used_at`` back); returns rows changed.

    Meant for the usage writer's batches; does not bump the revision (see the module doc).
    """
    ids = sorted_unique(key_ids)
    changed = 0
    for start in range(0, len(ids), _TOUCH_CHUNK):
        result = await session.execute(
            update(ApiKey)
            .where(ApiKey.id.in_(ids[start:start + _TOUCH_CHUNK]),
                   or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < at))
            .values(last_used_at=at).execution_options(synchronize_session=False))
        changed += result.rowcount  # type: ignore[attr-defined]
    return changed
