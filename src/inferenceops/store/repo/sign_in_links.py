"""Sign-in links: the external identity ``(issuer, subject)`` that acts as a user.

``admin.linking`` finds a signed-in person's user by this link, never again by email
once linked, and decides when a link may be made (a verified email, provisioning, or
a platform admin's explicit link). This module keeps the rows straight: one user per
identity (``Conflict`` otherwise), any number of identities per user. Links do not
affect the data-plane snapshot, so nothing here bumps the revision.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import Conflict, Invalid, NotFound, translating
from inferenceops.store.records import SignInLinkRecord
from inferenceops.store.repo._common import check_choice
from inferenceops.store.tables_identity import LINK_METHODS, SignInLink

MAX_PART_CHARS = 1024  # an issuer URL or a subject; OIDC's sub is at most 255 ASCII characters


def link_record(row: SignInLink) -> SignInLinkRecord:
    return SignInLinkRecord(row.id, row.issuer, row.subject, row.user_id, row.method, row.linked_by,
                            row.created_at)


async def find_link(session: AsyncSession, issuer: str, subject: str) -> SignInLinkRecord | None:
    """The link of ``(issuer, subject)``, None if that identity is linked to nobody."""
    with translating("looking up a sign-in link"):
        row = (await session.execute(select(SignInLink).where(
            SignInLink.issuer == issuer, SignInLink.subject == subject))).scalar_one_or_none()
    return None if row is None else link_record(row)


async def create_link(session: AsyncSession, issuer: str, subject: str, user_id: str, *,
                      method: str, linked_by: str) -> SignInLinkRecord:
    """Link the identity to ``user_id``; ``Conflict`` if it is linked already (to anyone)."""
    check_choice("a link method", method, LINK_METHODS)
    row = SignInLink(issuer=_part("issuer", issuer), subject=_part("subject", subject),
                     user_id=user_id, method=method, linked_by=linked_by)
    if await find_link(session, row.issuer, row.subject) is not None:
        raise Conflict(f"the identity {subject!r} of {issuer!r} is already linked to a user")
    with translating("linking a sign-in identity"):
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    return link_record(row)


async def list_links(session: AsyncSession, *, user_id: str | None = None,
                     issuer: str | None = None) -> tuple[SignInLinkRecord, ...]:
    """Links of a user and/or an issuer, oldest first."""
    stmt = select(SignInLink)
    if user_id is not None:
        stmt = stmt.where(SignInLink.user_id == user_id)
    if issuer is not None:
        stmt = stmt.where(SignInLink.issuer == issuer)
    rows = (await session.execute(stmt.order_by(SignInLink.created_at, SignInLink.id))).scalars()
    return tuple(link_record(row) for row in rows)


async def get_link(session: AsyncSession, link_id: str) -> SignInLinkRecord:
    row = await session.get(SignInLink, link_id)
    if row is None:
        raise NotFound(f"no sign-in link {link_id!r}")
    return link_record(row)


async def delete_link(session: AsyncSession, link_id: str) -> SignInLinkRecord:
    """Remove a link: that identity signs in as nobody until linked again."""
    record = await get_link(session, link_id)
    await session.execute(delete(SignInLink).where(SignInLink.id == link_id))
    return record


def _part(what: str, value: str) -> str:
    if not value or len(value) > MAX_PART_CHARS or not value.isprintable():
        raise Invalid(f"a sign-in {what} must be 1 to {MAX_PART_CHARS} printable characters",
                      field=what)
    return value
