"""Teams, users, service accounts, memberships, grants: round-trips, errors, cascades, revision."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC

import pytest

from inferenceops.store import Conflict, Database, Invalid, NotFound, repo


async def _revision(db: Database) -> int:
    async with db.read() as session:
        return await repo.revision(session)


async def test_team_round_trip_and_pagination(db: Database) -> None:
    async with db.transaction() as tx:
        created = [await repo.create_team(tx, f"team-{i:02}", weight=i + 1) for i in range(5)]
    async with db.read() as session:
        assert await repo.get_team(session, created[2].id) == created[2]
        assert await repo.get_team_by_name(session, "team-03") == created[3]
        first = await repo.list_teams(session, limit=2)
        second = await repo.list_teams(session, limit=2, after=first.next_after)
        last = await repo.list_teams(session, limit=2, after=second.next_after)
    assert [t.name for t in first.items + second.items + last.items] == [f"team-{i:02}" for i in range(5)]
    assert last.next_after is None
    assert created[0].id.startswith("team_") and len(created[0].id) == 25
    assert created[0].created_at.tzinfo is UTC


async def test_duplicate_team_name_is_conflict(db: Database) -> None:
    async with db.transaction() as tx:
        await repo.create_team(tx, "search")
    with pytest.raises(Conflict, match="search"):
        async with db.transaction() as tx:
            await repo.create_team(tx, "search")
    async with db.read() as session:  # the failed transaction left nothing behind
        assert len((await repo.list_teams(session)).items) == 1


async def test_bad_values_are_invalid(db: Database) -> None:
    async with db.transaction() as tx:
        with pytest.raises(Invalid):
            await repo.create_team(tx, "zero", weight=0)
        with pytest.raises(Invalid):
            await repo.create_user(tx, "not-an-email")
        with pytest.raises(Invalid):
            await repo.create_user(tx, "a@b.c", platform_role="emperor")


async def test_missing_rows_are_not_found(db: Database) -> None:
    async with db.transaction() as tx:
        for call in (repo.get_team(tx, "team_nope"), repo.get_team_by_name(tx, "nope"),
                     repo.get_user(tx, "usr_nope"), repo.delete_team(tx, "team_nope"),
                     repo.set_platform_role(tx, "usr_nope", "auditor"),
                     repo.get_service_account(tx, "sa_nope")):
            with pytest.raises(NotFound):
                await call
    with pytest.raises(NotFound):  # a foreign key to nothing
        async with db.transaction() as tx:
            await repo.create_service_account(tx, "team_nope", "bot")


async def test_users_round_trip_and_duplicate_email(db: Database) -> None:
    async with db.transaction() as tx:
        alice = await repo.create_user(tx, " Alice@Example.com ", display_name="Alice")
        await repo.create_user(tx, "bob@example.com")
    assert alice.email == "alice@example.com" and alice.platform_role is None and not alice.disabled
    with pytest.raises(Conflict, match="alice@example.com"):
        async with db.transaction() as tx:
            await repo.create_user(tx, "ALICE@example.com")
    async with db.transaction() as tx:
        admin = await repo.set_platform_role(tx, alice.id, "platform-admin")
        disabled = await repo.set_user_disabled(tx, alice.id, True)
    assert admin.platform_role == "platform-admin" and disabled.disabled
    async with db.read() as session:
        assert await repo.get_user_by_email(session, "Alice@example.com") == disabled
        page = await repo.list_users(session, limit=1)
        rest = await repo.list_users(session, after=page.next_after)
    assert [u.email for u in page.items + rest.items] == ["alice@example.com", "bob@example.com"]


async def test_memberships_and_service_accounts(db: Database) -> None:
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "t")
        user = await repo.create_user(tx, "u@x.io")
        bot = await repo.create_service_account(tx, team.id, "bot")
        await repo.set_membership(tx, team.id, user.id, "member")
        promoted = await repo.set_membership(tx, team.id, user.id, "owner")
    assert promoted.role == "owner" and bot.id.startswith("sa_")
    with pytest.raises(Conflict):
        async with db.transaction() as tx:
            await repo.create_service_account(tx, team.id, "bot")
    async with db.transaction() as tx:
        assert await repo.list_service_accounts(tx, team.id) == (bot,)
        assert [m.role for m in await repo.list_memberships(tx, user_id=user.id)] == ["owner"]
        with pytest.raises(Invalid):
            await repo.set_membership(tx, team.id, user.id, "overlord")
        other = await repo.create_user(tx, "o@x.io")
        kept = await repo.set_membership(tx, team.id, other.id, "owner")  # the last owner may not go
        await repo.remove_membership(tx, team.id, user.id)
        assert await repo.list_memberships(tx, team_id=team.id) == (kept,)
        with pytest.raises(NotFound):
            await repo.remove_membership(tx, team.id, user.id)


async def test_grants_are_idempotent(db: Database) -> None:
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "t")
        assert await repo.grant(tx, team.id, "llama") is True
        assert await repo.grant(tx, team.id, "llama") is False
        assert await repo.grant(tx, team.id, "embed") is True
    async with db.transaction() as tx:
        assert [g.model for g in await repo.list_grants(tx, team.id)] == ["embed", "llama"]
        await repo.revoke_grant(tx, team.id, "llama")
        with pytest.raises(NotFound):
            await repo.revoke_grant(tx, team.id, "llama")
        assert [g.model for g in await repo.list_grants(tx, team.id)] == ["embed"]
    with pytest.raises(NotFound):
        async with db.transaction() as tx:
            await repo.grant(tx, "team_nope", "llama")


async def test_deleting_a_team_cascades(db: Database, digest: Callable[[], bytes]) -> None:
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "doomed")
        other = await repo.create_team(tx, "stays")
        user = await repo.create_user(tx, "u@x.io")
        bot = await repo.create_service_account(tx, team.id, "bot")
        await repo.set_membership(tx, team.id, user.id, "owner")
        await repo.set_membership(tx, other.id, user.id, "member")
        await repo.grant(tx, team.id, "m")
        await repo.grant(tx, other.id, "m")
        await repo.create_api_key(tx, name="bot", prefix="sk-io-aaaa", digest=digest(),
                                  service_account_id=bot.id)
        kept = await repo.create_api_key(tx, name="u", prefix="sk-io-bbbb", digest=digest(),
                                         user_id=user.id, team_id=other.id)
    async with db.transaction() as tx:
        await repo.delete_team(tx, team.id)
    async with db.read() as session:
        assert await repo.list_memberships(session, user_id=user.id) == (
            await repo.list_memberships(session, team_id=other.id))
        assert await repo.list_grants(session, team.id) == ()
        assert await repo.list_service_accounts(session, team.id) == ()
        with pytest.raises(NotFound):
            await repo.get_service_account(session, bot.id)
        assert [k.id for k in (await repo.list_api_keys(session)).items] == [kept.id]
        assert await repo.get_user(session, user.id)


async def test_revision_bumps_on_mutations_not_reads(db: Database, digest: Callable[[], bytes]) -> None:
    start = await _revision(db)
    steps = []
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "t")
        steps.append(await repo.revision(tx))
        user = await repo.create_user(tx, "u@x.io")
        steps.append(await repo.revision(tx))
        await repo.set_membership(tx, team.id, user.id, "member")
        steps.append(await repo.revision(tx))
        await repo.grant(tx, team.id, "m")
        steps.append(await repo.revision(tx))
        key = await repo.create_api_key(tx, name="k", prefix="sk-io-x", digest=digest(), user_id=user.id)
        steps.append(await repo.revision(tx))
    assert steps == list(range(start + 1, start + 6))
    after_writes = await _revision(db)
    async with db.read() as session:  # reads, and no-op writes, leave it alone
        await repo.list_teams(session)
        await repo.get_api_key(session, key.id)
        await repo.load_identity(db)
    async with db.transaction() as tx:
        await repo.grant(tx, team.id, "m")
        await repo.set_membership(tx, team.id, user.id, "member")
        await repo.touch_last_used(tx, [key.id], key.created_at)
    assert await _revision(db) == after_writes
    async with db.transaction() as tx:
        await repo.revoke_api_key(tx, key.id)
    assert await _revision(db) == after_writes + 1
    with pytest.raises(Conflict):  # a rolled-back mutation does not count
        async with db.transaction() as tx:
            await repo.create_team(tx, "t")
    assert await _revision(db) == after_writes + 1


async def test_is_empty(db: Database, digest: Callable[[], bytes]) -> None:
    async with db.read() as session:
        assert await repo.is_empty(session)
    async with db.transaction() as tx:
        await repo.create_team(tx, "t")
        assert await repo.is_empty(tx)  # teams alone do not count
        await repo.create_user(tx, "u@x.io")
        assert not await repo.is_empty(tx)
