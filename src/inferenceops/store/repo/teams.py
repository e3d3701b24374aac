"""Teams and their service accounts: create, read, list, set a team's weight, delete.

A team read here carries its body retention (``repo.retention`` sets it).

Deleting a team deletes (by ON DELETE CASCADE in the schema) its memberships,
grants, service accounts and every key scoped to it. Functions take the
caller's session (from ``Database.transaction()``/``read()``) and return plain
records; mutations bump the revision.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import Invalid, NotFound, translating
from inferenceops.store.records import Page, ServiceAccountRecord, TeamRecord
from inferenceops.store.repo._common import bump_revision, check_name, page
from inferenceops.store.repo.retention import with_retention
from inferenceops.store.tables_identity import ServiceAccount, Team


def team_record(row: Team) -> TeamRecord:
    return TeamRecord(row.id, row.name, row.weight, row.created_at, row.updated_at)


def service_account_record(row: ServiceAccount) -> ServiceAccountRecord:
    return ServiceAccountRecord(row.id, row.team_id, row.name, row.created_at)


async def create_team(session: AsyncSession, name: str, *, weight: int = 1) -> TeamRecord:
    """A new team; ``Conflict`` if the name is taken, ``Invalid`` unless weight > 0."""
    name = check_name("a team name", name)
    if weight < 1:
        raise Invalid(f"a team's weight must be a positive integer, not {weight}", field="weight")
    team = Team(name=name, weight=weight)
    with translating(f"creating team {name!r}"):
        session.add(team)
        await session.flush()
    await bump_revision(session)
    return team_record(team)


async def get_team(session: AsyncSession, team_id: str) -> TeamRecord:
    team = await session.get(Team, team_id)
    if team is None:
        raise NotFound(f"no team with id {team_id!r}")
    return (await with_retention(session, [team_record(team)]))[0]


async def get_team_by_name(session: AsyncSession, name: str) -> TeamRecord:
    team = (await session.execute(select(Team).where(Team.name == name))).scalar_one_or_none()
    if team is None:
        raise NotFound(f"no team named {name!r}")
    return team_record(team)


async def list_teams(session: AsyncSession, *, limit: int = 100,
                     after: str | None = None) -> Page[TeamRecord]:
    """Teams ordered by name; ``after`` is the last name of the previous page."""
    found = await page(session, select(Team), Team.name, after, limit, team_record, lambda t: t.name)
    return Page(await with_retention(session, found.items), found.next_after)


async def set_team_weight(session: AsyncSession, team_id: str, weight: int) -> TeamRecord:
    """Change a team's fair-share weight (> 0); setting the weight it has changes nothing."""
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        raise Invalid(f"a team's weight must be a positive integer, not {weight!r}", field="weight")
    team = await session.get(Team, team_id, with_for_update=True)
    if team is None:
        raise NotFound(f"no team with id {team_id!r}")
    if team.weight != weight:
        team.weight = weight
        with translating(f"setting the weight of team {team_id!r}"):
            await session.flush()
        await bump_revision(session)
    return (await with_retention(session, [team_record(team)]))[0]


async def delete_team(session: AsyncSession, team_id: str) -> None:
    """Delete a team and, by cascade, its memberships, grants, service accounts and keys."""
    result = await session.execute(delete(Team).where(Team.id == team_id))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"no team with id {team_id!r}")
    await bump_revision(session)


async def create_service_account(session: AsyncSession, team_id: str, name: str) -> ServiceAccountRecord:
    """A new service account in a team; ``NotFound`` for an unknown team, ``Conflict`` if named twice."""
    name = check_name("a service account name", name)
    account = ServiceAccount(team_id=team_id, name=name)
    with translating(f"creating service account {name!r} in team {team_id!r}"):
        session.add(account)
        await session.flush()
    await bump_revision(session)
    return service_account_record(account)


async def get_service_account(session: AsyncSession, account_id: str) -> ServiceAccountRecord:
    account = await session.get(ServiceAccount, account_id)
    if account is None:
        raise NotFound(f"no service account with id {account_id!r}")
    return service_account_record(account)


async def list_service_accounts(session: AsyncSession, team_id: str) -> tuple[ServiceAccountRecord, ...]:
    """A team's service accounts by name (a team has few; no pagination)."""
    rows = (await session.execute(select(ServiceAccount).where(ServiceAccount.team_id == team_id)
                                  .order_by(ServiceAccount.name))).scalars()
    return tuple(service_account_record(row) for row in rows)
