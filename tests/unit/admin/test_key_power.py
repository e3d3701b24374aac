"""A key speaks for its owner in its team only, and only while the owner may (issue 8, finding 1).

The reported escalation first — a team owner pulls a platform admin into their
team and mints an admin-scoped key "for" them — then the rules that close its
whole class, on the admin API (read afresh on every call) and on the data
plane's snapshot (rebuilt from the store at every revision), on SQLite and
PostgreSQL. ``test_privilege_stateful`` explores random sequences of actions.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from tests.unit.admin import test_admin_api
from tests.unit.admin.test_admin_api import HASHER, V1, World, call

from inferenceops.platform.keys import new_secret, visible_prefix
from inferenceops.store import repo
from inferenceops.store.snapshot_builder import build_identity

pytestmark = pytest.mark.asyncio(loop_scope="module")
world = test_admin_api.world  # the admin API's seeded world, on SQLite and PostgreSQL


async def _key(w: World, user: str, team: str | None, scopes: Iterable[str] = ("inference", "admin"),
               ) -> tuple[str, str]:
    secret = new_secret()
    async with w.db.transaction() as tx:
        key = await repo.create_api_key(tx, name="k", prefix=visible_prefix(secret),
                                        digest=HASHER.digest(secret), user_id=user, team_id=team,
                                        scopes=scopes)
    return key.id, secret


async def _platform_admin(w: World, member_of: str | None = None) -> str:
    async with w.db.transaction() as tx:
        user = await repo.create_user(tx, f"{w.unique('root')}@example.com",
                                      platform_role="platform-admin")
        if member_of is not None:
            await repo.set_membership(tx, member_of, user.id, "member")
    return user.id


async def test_an_owner_cannot_pull_an_admin_into_their_team_nor_mint_keys_for_them(
        world: World) -> None:
    owner, team = world.secrets["ownerA"], world.ids["A"]
    admin_user = await _platform_admin(world)
    async with world.db.read() as tx:
        email = (await repo.get_user(tx, admin_user)).email
    added = await call(world.app, "POST", f"{V1}/teams/{team}/members",
                       {"email": email, "role": "member"}, secret=owner)
    assert added.status == 403
    put = await call(world.app, "PUT", f"{V1}/teams/{team}/members/{admin_user}",
                     {"role": "member"}, secret=owner)
    assert put.status == 403
    # Even with the admin in the team (say they accepted an invitation), no key for them.
    async with world.db.transaction() as tx:
        await repo.set_membership(tx, team, admin_user, "member")
    minted = await call(world.app, "POST", f"{V1}/keys", {
        "name": "x", "user_id": admin_user, "team_id": team, "scopes": ["admin", "inference"]},
        secret=owner)
    assert minted.status == 403 and minted.json()["error"]["type"] == "permission_error"
    async with world.db.read() as tx:
        assert (await repo.list_api_keys(tx, user_id=admin_user)).items == ()


async def test_a_team_key_acts_with_its_owners_team_role_never_their_platform_role(
        world: World) -> None:
    team = world.ids["A"]
    admin_user = await _platform_admin(world, member_of=team)
    _, team_key = await _key(world, admin_user, team)
    me = (await call(world.app, "GET", f"{V1}/me", secret=team_key)).json()
    assert me["platform_role"] is None and me["team_roles"] == {team: "member"}
    assert (await call(world.app, "GET", f"{V1}/users", secret=team_key)).status == 403
    assert (await call(world.app, "POST", f"{V1}/teams", {"name": world.unique("t")},
                       secret=team_key)).status == 403
    assert (await call(world.app, "GET", f"{V1}/teams/{world.ids['B']}", secret=team_key)).status == 404
    # The same person's team-less key is their platform key.
    _, platform_key = await _key(world, admin_user, None)
    assert (await call(world.app, "GET", f"{V1}/users", secret=platform_key)).status == 200
    # On the data plane too: the team key sees its team's grants, the platform key everything.
    identity = await build_identity(world.db)
    team_side = identity.key(HASHER.digest(team_key))
    platform_side = identity.key(HASHER.digest(platform_key))
    assert team_side is not None and platform_side is not None
    assert not team_side.principal.is_platform_admin and platform_side.principal.is_platform_admin
    assert identity.may_use(team_side, "model-A") and not identity.may_use(team_side, "model-B")
    assert identity.may_use(platform_side, "model-B")


async def test_leaving_the_team_or_a_lower_role_takes_the_power_away_at_once(world: World) -> None:
    team = await world.fresh_team()
    user = await world.fresh_user(member_of=team, role="owner")
    await world.fresh_user(member_of=team, role="owner")  # so ``user`` is not the last owner
    _, secret = await _key(world, user, team)
    digest = HASHER.digest(secret)

    async def admin_status() -> int:
        return (await call(world.app, "GET", f"{V1}/teams/{team}/members", secret=secret)).status

    async def data_plane_scopes() -> frozenset[str] | None:
        key = (await build_identity(world.db)).key(digest)
        return None if key is None else key.scopes

    assert await admin_status() == 200 and await data_plane_scopes() == {"inference", "admin"}
    async with world.db.transaction() as tx:
        await repo.set_membership(tx, team, user, "viewer")
    # A viewer reads the team but not its members, and may not spend its capacity.
    assert await admin_status() == 403 and await data_plane_scopes() == {"admin"}
    async with world.db.transaction() as tx:
        await repo.remove_membership(tx, team, user)
    assert await admin_status() == 401 and await data_plane_scopes() is None
    async with world.db.transaction() as tx:
        await repo.set_membership(tx, team, user, "member")
    assert await data_plane_scopes() == {"inference", "admin"}
    async with world.db.transaction() as tx:
        await repo.set_user_disabled(tx, user, True)
    assert await admin_status() == 401 and await data_plane_scopes() is None


async def test_a_platform_key_follows_its_owners_platform_role(world: World) -> None:
    admin_user = await _platform_admin(world)
    _, secret = await _key(world, admin_user, None)
    assert (await call(world.app, "GET", f"{V1}/users", secret=secret)).status == 200
    async with world.db.transaction() as tx:
        await repo.set_platform_role(tx, admin_user, "auditor")
    assert (await call(world.app, "GET", f"{V1}/users", secret=secret)).status == 200
    assert (await call(world.app, "POST", f"{V1}/teams", {"name": world.unique("t")},
                       secret=secret)).status == 403
    key = (await build_identity(world.db)).key(HASHER.digest(secret))
    assert key is not None and key.scopes == {"admin"} and not key.principal.is_platform_admin
    async with world.db.transaction() as tx:
        await repo.set_platform_role(tx, admin_user, None)
    assert (await call(world.app, "GET", f"{V1}/users", secret=secret)).status == 401
    assert (await build_identity(world.db)).key(HASHER.digest(secret)) is None


async def test_keys_are_issued_only_for_oneself_or_a_service_account_of_ones_team(
        world: World) -> None:
    a, member, owner, admin = (world.ids["A"], world.secrets["memberA"], world.secrets["ownerA"],
                               world.secrets["admin"])
    for_sa = {"name": "k", "service_account_id": world.ids["saA_account"], "scopes": ["admin"]}
    assert (await call(world.app, "POST", f"{V1}/keys", for_sa, secret=member)).status == 403
    assert (await call(world.app, "POST", f"{V1}/keys", for_sa, secret=owner)).status == 201
    mine = {"name": "k", "team_id": a, "scopes": ["inference"]}
    created = await call(world.app, "POST", f"{V1}/keys", mine, secret=member)
    assert created.status == 201 and created.json()["created_by"] == world.actors["memberA"]
    # Rotating hands out a secret with the key's power: the owner of the team may revoke a
    # member's key, not rotate it; the member rotates their own.
    key_id = created.json()["id"]
    assert (await call(world.app, "POST", f"{V1}/keys/{key_id}/rotate", {"overlap_s": 0},
                       secret=owner)).status == 403
    rotated = await call(world.app, "POST", f"{V1}/keys/{key_id}/rotate", {"overlap_s": 0},
                         secret=member)
    assert rotated.status == 201 and rotated.json()["created_by"] == world.actors["memberA"]
    assert (await call(world.app, "POST", f"{V1}/keys/{rotated.json()['id']}/revoke",
                       secret=owner)).status == 200
    # A key without a team carries its owner's platform role: only its owner mints one.
    other_admin = await _platform_admin(world)
    teamless = {"name": "k", "user_id": other_admin, "scopes": ["admin"]}
    assert (await call(world.app, "POST", f"{V1}/keys", teamless, secret=admin)).status == 403
    _, other_key = await _key(world, other_admin, None)
    assert (await call(world.app, "POST", f"{V1}/keys", {"name": "k", "scopes": ["admin"]},
                       secret=other_key)).status == 201
    own_id = (await call(world.app, "GET", f"{V1}/keys?user_id={other_admin}",
                         secret=admin)).json()["data"][0]["id"]
    assert (await call(world.app, "POST", f"{V1}/keys/{own_id}/rotate", {"overlap_s": 0},
                       secret=admin)).status == 403
