"""Users and team memberships: create, read, list, platform roles, disable, member roles.

Emails are stored trimmed and lower-cased, so uniqueness ignores case.
Functions take the caller's session and return plain records; mutations bump
the revision.

**A team never loses its last owner.** Demoting or removing a team's last
enabled owner, or disabling a user who is the last enabled owner of a team, is
``Conflict`` (a disabled owner cannot act for the team, so only enabled owners
count). Teams that have no enabled owner may still be changed freely, and
deleting a whole team (``teams.delete_team``) is not affected. The rule holds
under concurrency: a change that may remove an owner first locks the changed
row, then the one ``revision`` row, and only then counts the owners. Every store
writer locks that row anyway (``bump_revision``) and holds it until commit, so
two such changes are serialised and the second counts what the first
committed; and the lock order (changed row, then revision) is the order every
mutation already takes, so it adds no deadlock. SQLite serialises writers with
``BEGIN IMMEDIATE`` (``store.db``) already.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import Conflict, Invalid, NotFound, translating
from inferenceops.store.records import MembershipRecord, Page, UserRecord
from inferenceops.store.repo._common import bump_revision, check_choice, page
from inferenceops.store.tables import REVISION_KEY, ControlState, utcnow
from inferenceops.store.tables_identity import PLATFORM_ROLES, TEAM_ROLES, Membership, Team, User

OWNER = "owner"
T = TypeVar("T", User, Membership)


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
    """Disable (or re-enable) a user: their keys stop authenticating at the next snapshot.

    ``Conflict`` when disabling the last enabled owner of a team (the message names the teams).
    """
    if disabled:
        row = await _locked(session, User, user_id)
        if row is None:
            raise NotFound(f"no user with id {user_id!r}")
        if not row.disabled:
            await _lock_owner_changes(session)
            _refuse_if_orphaned(user_id, await _teams_left_without_owner(session, user_id))
    return await _update_user(session, user_id, disabled=disabled)


async def set_membership(session: AsyncSession, team_id: str, user_id: str, role: str, *,
                         now: datetime | None = None) -> MembershipRecord:
    """Add a user to a team with ``role``, or change their role; ``NotFound`` for unknown ids.

    ``Conflict`` when it would demote the team's last enabled owner.
    """
    check_choice("a team role", role, TEAM_ROLES)
    existing = await _locked(session, Membership, (team_id, user_id))
    if existing is not None:
        if existing.role != role:
            if existing.role == OWNER:
                await _keep_an_owner(session, team_id, user_id)
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
    """Take a user out of a team; ``Conflict`` when they are its last enabled owner."""
    existing = await _locked(session, Membership, (team_id, user_id))
    if existing is None:
        raise NotFound(f"user {user_id!r} is not a member of team {team_id!r}")
    if existing.role == OWNER:
        await _keep_an_owner(session, team_id, user_id)
    await session.execute(
        delete(Membership).where(Membership.team_id == team_id, Membership.user_id == user_id))
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


# ---- the last-owner rule (see the module docstring) -------------------------------------------

async def _locked(session: AsyncSession, table: type[T], key: object) -> T | None:
    """The row, locked and read afresh (not the session's possibly older copy)."""
    return await session.get(table, key, with_for_update=True, populate_existing=True)


async def _lock_owner_changes(session: AsyncSession) -> None:
    """Wait for every other writer's commit: lock the ``revision`` row (no-op on SQLite)."""
    await session.execute(select(ControlState.value).where(ControlState.key == REVISION_KEY)
                          .with_for_update())


async def _teams_left_without_owner(session: AsyncSession, user_id: str,
                                    team_id: str | None = None) -> list[str]:
    """Names of the teams (all, or only ``team_id``) whose one enabled owner is ``user_id``."""
    mine = (select(Membership.team_id).join(User, User.id == Membership.user_id)
            .where(Membership.user_id == user_id, Membership.role == OWNER, User.disabled.is_(False)))
    if team_id is not None:
        mine = mine.where(Membership.team_id == team_id)
    stmt = (select(Team.name).join(Membership, Membership.team_id == Team.id)
            .join(User, User.id == Membership.user_id)
            .where(Team.id.in_(mine), Membership.role == OWNER, User.disabled.is_(False))
            .group_by(Team.id, Team.name).having(func.count() == 1).order_by(Team.name))
    return list((await session.execute(stmt)).scalars())


async def _keep_an_owner(session: AsyncSession, team_id: str, user_id: str) -> None:
    """``Conflict`` if ``user_id`` is the one enabled owner of ``team_id``; call with their row locked."""
    await _lock_owner_changes(session)
    _refuse_if_orphaned(user_id, await _teams_left_without_owner(session, user_id, team_id))


def _refuse_if_orphaned(user_id: str, teams: list[str]) -> None:
    if teams:
        named = ", ".join(repr(name) for name in teams)
        raise Conflict(f"user {user_id!r} is the last owner of team{'s' * (len(teams) > 1)} {named}: "
                       "add another owner first (a platform admin can also delete the whole team)")
