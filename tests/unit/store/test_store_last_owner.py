"""A team never loses its last owner: demote, remove and disable are refused, also when racing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store import Conflict, Database, repo

Change = Callable[[AsyncSession, str, str], Awaitable[object]]


async def _demote(tx: AsyncSession, team_id: str, user_id: str) -> object:
    return await repo.set_membership(tx, team_id, user_id, "member")


async def _remove(tx: AsyncSession, team_id: str, user_id: str) -> object:
    return await repo.remove_membership(tx, team_id, user_id)


async def _disable(tx: AsyncSession, team_id: str, user_id: str) -> object:
    return await repo.set_user_disabled(tx, user_id, True)


CHANGES: dict[str, Change] = {"demote": _demote, "remove": _remove, "disable": _disable}


async def _team_with_owners(db: Database, *owners: str, name: str = "search") -> tuple[str, list[str]]:
    async with db.transaction() as tx:
        team = await repo.create_team(tx, name)
        ids = []
        for email in owners:
            user = await repo.create_user(tx, email)
            await repo.set_membership(tx, team.id, user.id, "owner")
            ids.append(user.id)
    return team.id, ids


async def _enabled_owners(db: Database, team_id: str) -> set[str]:
    async with db.read() as session:
        members = await repo.list_memberships(session, team_id=team_id)
        return {m.user_id for m in members
                if m.role == "owner" and not (await repo.get_user(session, m.user_id)).disabled}


@pytest.mark.parametrize("change", CHANGES)
async def test_the_last_owner_stays(db: Database, change: str) -> None:
    team, (ada,) = await _team_with_owners(db, "ada@x.io")
    revision = await _revision(db)
    with pytest.raises(Conflict, match=r"last owner of team 'search': add another owner first"):
        async with db.transaction() as tx:
            await CHANGES[change](tx, team, ada)
    assert await _enabled_owners(db, team) == {ada}
    assert await _revision(db) == revision  # the refused change left nothing behind
    async with db.transaction() as tx:  # with a second owner, the first may go
        bob = await repo.create_user(tx, "bob@x.io")
        await repo.set_membership(tx, team, bob.id, "owner")
        await CHANGES[change](tx, team, ada)
    assert await _enabled_owners(db, team) == {bob.id}


async def test_disabled_owners_do_not_count(db: Database) -> None:
    team, (ada, bob) = await _team_with_owners(db, "ada@x.io", "bob@x.io")
    async with db.transaction() as tx:
        await repo.set_user_disabled(tx, bob, True)
    for change in CHANGES.values():
        with pytest.raises(Conflict, match="last owner"):
            async with db.transaction() as tx:
                await change(tx, team, ada)
    async with db.transaction() as tx:  # a disabled owner may always be demoted or removed
        await repo.set_membership(tx, team, bob, "viewer")
        await repo.remove_membership(tx, team, bob)
        await repo.set_user_disabled(tx, bob, True)  # already disabled: nothing to check


async def test_disable_names_every_team_it_would_orphan(db: Database) -> None:
    lonely, (ada,) = await _team_with_owners(db, "ada@x.io", name="lonely")
    async with db.transaction() as tx:
        also = await repo.create_team(tx, "also-lonely")
        shared = await repo.create_team(tx, "shared")
        member_only = await repo.create_team(tx, "member-only")
        bob = await repo.create_user(tx, "bob@x.io")
        for team, user, role in ((also.id, ada, "owner"), (shared.id, ada, "owner"),
                                 (shared.id, bob.id, "owner"), (member_only.id, ada, "member")):
            await repo.set_membership(tx, team, user, role)
    with pytest.raises(Conflict, match=r"last owner of teams 'also-lonely', 'lonely': add another"):
        async with db.transaction() as tx:
            await repo.set_user_disabled(tx, ada, True)
    async with db.transaction() as tx:
        for team in (lonely, also.id):
            await repo.set_membership(tx, team, bob.id, "owner")
        assert (await repo.set_user_disabled(tx, ada, True)).disabled
        assert not (await repo.set_user_disabled(tx, ada, False)).disabled  # re-enabling is free


async def test_teams_without_an_owner_change_freely(db: Database) -> None:
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "ownerless")
        user = await repo.create_user(tx, "ada@x.io")
        await repo.set_membership(tx, team.id, user.id, "member")
        await repo.set_membership(tx, team.id, user.id, "viewer")
        await repo.remove_membership(tx, team.id, user.id)
        await repo.set_membership(tx, team.id, user.id, "owner")  # promoting is always allowed
        await repo.set_membership(tx, team.id, user.id, "owner")  # and so is setting the same role
    async with db.transaction() as tx:  # deleting the whole team takes its last owner with it
        await repo.delete_team(tx, team.id)
        assert await repo.list_memberships(tx, user_id=user.id) == ()


# --- concurrency ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), [("demote", "demote"), ("remove", "disable"),
                                               ("disable", "demote"), ("disable", "disable")])
async def test_racing_changes_keep_one_owner(db: Database, first: str, second: str) -> None:
    """Two owners, each taken away by a transaction that lingers: exactly one of them may go."""
    team, (ada, bob) = await _team_with_owners(db, "ada@x.io", "bob@x.io")

    async def take_away(change: str, user: str) -> bool:
        try:
            async with db.transaction() as tx:
                await CHANGES[change](tx, team, user)
                await asyncio.sleep(0.05)  # hold the transaction open while the other tries
        except Conflict:
            return False
        return True

    done = await asyncio.gather(take_away(first, ada), take_away(second, bob))
    assert sorted(done) == [False, True]
    assert len(await _enabled_owners(db, team)) == 1


@pytest.mark.parametrize(("first", "second"), [("demote", "demote"), ("remove", "demote"),
                                               ("disable", "remove"), ("demote", "disable")])
async def test_postgresql_second_session_waits_then_sees_the_first(
        db: Database, backend: str, first: str, second: str) -> None:
    """The first session has taken one owner away and not committed; the second must wait for
    it (not count the first owner as still there) and then be refused."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL only: SQLite writers never overlap (BEGIN IMMEDIATE)")
    team, (ada, bob) = await _team_with_owners(db, "ada@x.io", "bob@x.io")

    async def second_session() -> None:
        async with db.transaction() as tx:
            await CHANGES[second](tx, team, bob)

    async with db.transaction() as tx:
        await CHANGES[first](tx, team, ada)
        waiting = asyncio.create_task(second_session())
        await _until_waiting_on_a_lock(db, waiting)
    with pytest.raises(Conflict, match="last owner of team 'search'"):
        await waiting
    assert await _enabled_owners(db, team) == {bob}


async def _until_waiting_on_a_lock(db: Database, task: asyncio.Task[None]) -> None:
    """Return once another session of this database waits on a lock; fail if ``task`` ends first."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND wait_event_type = 'Lock'")
    for _ in range(500):
        if task.done():
            task.result()  # its exception, if any
            pytest.fail("the second session finished without waiting for the first")
        async with db.read() as session:
            if (await session.execute(query)).scalar_one():
                return
        await asyncio.sleep(0.01)
    pytest.fail("the second session never waited on a lock")


async def _revision(db: Database) -> int:
    async with db.read() as session:
        return await repo.revision(session)
