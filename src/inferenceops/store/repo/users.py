"""Users and team memberships: create, read, list, platform roles, disable, member roles.

Emails are stored trimmed and lower-cased, so uniqueness ignores case.
Functions take the caller's session and return plain records; mutations bump
the revision.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import Invalid, NotFound, translating
from inferenceops.store.records import MembershipRecord, Page, UserRecord
from inferenceops.store.repo._common import bump_revision, check_choice, page
from inferenceops.store.tables import PLATFORM_ROLES, TEAM_ROLES, Membership, User, utcnow


def user_record(row: User) -> UserRecord:
    return UserRecord(row.id, row.email, row.display_name, row.platform_role, row.disabled, row.created_at)


def membership_record(row: Membership) -> MembershipRecord:
    return MembershipRecord(row.team_id, row.user_id, row.role, row.created_at)


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise Invalid(f"{email!r} is not an email address")
    return email


def _role(role: str | None) -> str | None:
    return None if role is None else check_choice("a platform role", role, PLATFORM_ROLES)


async def create_user(session: AsyncSession, email: str, *, display_name: str = "",
                      platform_role: str | None = None) -> UserRecord:
    """A new user; ``Conflict`` if the email (case-insensitively) is taken."""
    user = User(email=normalize_email(email), display_name=display_name.strip(),
                platform_role=_role(platform_role), disabled=False)
    with translating(f"creating user {user.email!r}"):
        session.add(user)
        await session.flush()
    await bump_revision(session)
    return user_record(user)


async def get_user(session: AsyncSession, user_id: str) -> UserRecord:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id!r}")
    return user_record(user)


async def get_user_by_email(session: AsyncSession, email: str) -> UserRecord:
    email = email.strip().lower()
    user = (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user with email {email!r}")
    return user_record(user)


async def list_users(session: AsyncSession, *, limit: int = 100,
                     after: str | None = None) -> Page[UserRecord]:
    """Users ordered by email; ``after`` is the last email of the previous page."""
    return await page(session, select(User), User.email, after, limit, user_record, lambda u: u.email)


async def _update_user(session: AsyncSession, user_id: str, **values: object) -> UserRecord:
    row = (await session.execute(update(User).where(User.id == user_id).values(**values)
                                 .returning(User))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no user with id {user_id!r}")
    await bump_revision(session)
    return user_record(row)


async def set_platform_role(session: AsyncSession, user_id: str, role: str | None) -> UserRecord:
    """Give (or with None, take away) a user's platform-wide role."""
    return await _update_user(session, user_id, platform_role=_role(role))


async def set_user_disabled(session: AsyncSession, user_id: str, disabled: bool) -> UserRecord:
    """Disable (or re-enable) a user: their keys stop authenticating at the next snapshot."""
    return await _update_user(session, user_id, disabled=disabled)


async def set_membership(session: AsyncSession, team_id: str, user_id: str, role: str, *,
                         now: datetime | None = None) -> MembershipRecord:
    """Add a user to a team with ``role``, or change their role; ``NotFound`` for unknown ids."""
    check_choice("a team role", role, TEAM_ROLES)
    existing = await session.get(Membership, (team_id, user_id), with_for_update=True)
    if existing is not None:
        if existing.role != role:
            existing.role = role
            await session.flush()
            await bump_revision(session)
        return membership_record(existing)
    member = Membership(team_id=team_id, user_id=user_id, role=role, created_at=now or utcnow())
    with translating(f"adding user {user_id!r} to team {team_id!r}"):
        session.add(member)
        await session.flush()
    await bump_revision(session)
    return membership_record(member)


async def remove_membership(session: AsyncSession, team_id: str, user_id: str) -> None:
    result = await session.execute(
        delete(Membership).where(Membership.team_id == team_id, Membership.user_id == user_id))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"user {user_id!r} is not a member of team {team_id!r}")
    await bump_revision(session)


async def list_memberships(session: AsyncSession, *, team_id: str | None = None,
                           user_id: str | None = None) -> tuple[MembershipRecord, ...]:
    """Memberships of a team and/or of a user (at least one of them)."""
    if team_id is None and user_id is None:
        raise Invalid("list memberships of a team, of a user, or both")
    stmt = select(Membership)
    if team_id is not None:
        stmt = stmt.where(Membership.team_id == team_id)
    if user_id is not None:
        stmt = stmt.where(Membership.user_id == user_id)
    rows = (await session.execute(stmt.order_by(Membership.team_id, Membership.user_id))).scalars()
    return tuple(membership_record(row) for row in rows)
