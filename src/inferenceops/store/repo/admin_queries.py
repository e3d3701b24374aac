"""Reads the admin API needs beyond the core repositories: key by digest, global listings.

Used only by ``inferenceops.admin.api`` (imported from this module directly,
not re-exported from ``store.repo``). Read-only: nothing here writes or bumps
the revision. Returns plain records, like every repository.
"""

from __future__ import annotations

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import Invalid
from inferenceops.store.records import (
    ApiKeyRecord,
    GrantRecord,
    MembershipRecord,
    Page,
    ServiceAccountRecord,
)
from inferenceops.store.repo._common import MAX_PAGE, page
from inferenceops.store.repo.grants import grant_record
from inferenceops.store.repo.keys import api_key_record
from inferenceops.store.repo.teams import service_account_record
from inferenceops.store.repo.users import membership_record
from inferenceops.store.tables_identity import ApiKey, Grant, Membership, ServiceAccount

#: Separates team id and model in a grant listing cursor (team ids never contain it).
GRANT_CURSOR_SEP = ":"


async def find_api_key_by_digest(session: AsyncSession, digest: bytes) -> ApiKeyRecord | None:
    """The key (revoked or not) whose digest this is, or None."""
    row = (await session.execute(select(ApiKey).where(ApiKey.digest == digest))).scalar_one_or_none()
    return None if row is None else api_key_record(row)


async def get_membership(session: AsyncSession, team_id: str, user_id: str) -> MembershipRecord | None:
    row = await session.get(Membership, (team_id, user_id))
    return None if row is None else membership_record(row)


async def list_all_service_accounts(session: AsyncSession, *, limit: int = 100,
                                    after: str | None = None) -> Page[ServiceAccountRecord]:
    """Every team's service accounts, ordered by id; ``after`` is the previous page's last id."""
    return await page(session, select(ServiceAccount), ServiceAccount.id, after, limit,
                      service_account_record, lambda a: a.id)


async def list_all_grants(session: AsyncSession, *, limit: int = 100,
                          after: str | None = None) -> Page[GrantRecord]:
    """Every grant ordered by (team id, model); the cursor is ``"<team_id>:<model>"``."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    stmt = select(Grant)
    if after is not None:
        team_id, sep, model = after.partition(GRANT_CURSOR_SEP)
        if not sep:
            raise Invalid(f"not a grant cursor: {after!r}")
        stmt = stmt.where(tuple_(Grant.team_id, Grant.model) > (team_id, model))
    rows = (await session.execute(stmt.order_by(Grant.team_id, Grant.model).limit(limit))).scalars()
    items = tuple(grant_record(row) for row in rows)
    last = items[-1] if len(items) == limit else None
    return Page(items, None if last is None else f"{last.team_id}{GRANT_CURSOR_SEP}{last.model}")
