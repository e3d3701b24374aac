"""API keys: round-trips, one-owner rule, duplicate digests, revoke, rotate overlap, last use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from inferenceops.store import Conflict, Database, Invalid, NotFound, repo
from inferenceops.store.records import UserRecord
from inferenceops.store.tables_identity import ApiKey

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


async def _owner(db: Database) -> tuple[str, UserRecord]:
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "t")
        user = await repo.create_user(tx, "u@x.io")
    return team.id, user


async def test_key_round_trip_and_listing(db: Database, digest: Callable[[], bytes]) -> None:
    team_id, user = await _owner(db)
    d = digest()
    async with db.transaction() as tx:
        bot = await repo.create_service_account(tx, team_id, "bot")
        key = await repo.create_api_key(
            tx, name="laptop", prefix="sk-io-abcdef", digest=d, user_id=user.id, team_id=team_id,
            scopes=["inference", "batch"], allowed_models=["b", "a"], expires_at=NOW, now=NOW)
        sa_key = await repo.create_api_key(tx, name="ci", prefix="sk-io-zzzz", digest=digest(),
                                           service_account_id=bot.id)
    assert key.id.startswith("key_") and key.digest == d
    assert key.scopes == {"inference", "batch"} and key.allowed_models == {"a", "b"}
    assert key.expires_at == NOW and key.created_at == NOW and key.revoked_at is None
    assert sa_key.team_id == team_id and sa_key.allowed_models is None  # the account's team
    async with db.read() as session:
        assert await repo.get_api_key(session, key.id) == key
        assert (await repo.list_api_keys(session, user_id=user.id)).items == (key,)
        assert (await repo.list_api_keys(session, service_account_id=bot.id)).items == (sa_key,)
        both = await repo.list_api_keys(session, team_id=team_id, limit=1)
        rest = await repo.list_api_keys(session, team_id=team_id, after=both.next_after)
        assert {k.id for k in both.items + rest.items} == {key.id, sa_key.id}
        with pytest.raises(NotFound):
            await repo.get_api_key(session, "key_nope")


async def test_duplicate_digest_is_conflict(db: Database, digest: Callable[[], bytes]) -> None:
    _, user = await _owner(db)
    d = digest()
    async with db.transaction() as tx:
        await repo.create_api_key(tx, name="a", prefix="sk-io-a", digest=d, user_id=user.id)
    with pytest.raises(Conflict, match="already exists"):
        async with db.transaction() as tx:
            await repo.create_api_key(tx, name="b", prefix="sk-io-b", digest=d, user_id=user.id)


async def test_exactly_one_owner(db: Database, digest: Callable[[], bytes]) -> None:
    team_id, user = await _owner(db)
    async with db.transaction() as tx:
        bot = await repo.create_service_account(tx, team_id, "bot")
        with pytest.raises(Invalid, match="exactly one"):
            await repo.create_api_key(tx, name="x", prefix="sk-io-x", digest=digest())
        with pytest.raises(Invalid, match="exactly one"):
            await repo.create_api_key(tx, name="x", prefix="sk-io-x", digest=digest(),
                                      user_id=user.id, service_account_id=bot.id)
        with pytest.raises(Invalid, match="belongs to team"):
            other = await repo.create_team(tx, "other")
            await repo.create_api_key(tx, name="x", prefix="sk-io-x", digest=digest(),
                                      service_account_id=bot.id, team_id=other.id)
    # The schema's CHECK holds even for writers that bypass the repository.
    for owners in ({}, {"user_id": user.id, "service_account_id": bot.id}):
        with pytest.raises(Invalid, match="one_owner|CHECK"):
            async with db.transaction() as tx:
                await tx.execute(insert(ApiKey).values(
                    id="key_raw", name="raw", prefix="sk-io-raw", digest=digest(), scopes=["inference"],
                    created_at=NOW, **owners))


async def test_bad_key_values_are_invalid(db: Database, digest: Callable[[], bytes]) -> None:
    _, user = await _owner(db)
    async with db.transaction() as tx:
        for kwargs in ({"digest": b"short"}, {"scopes": ["root"]}, {"scopes": []}, {"prefix": " "}):
            args = {"name": "k", "prefix": "sk-io-k", "digest": digest(), "user_id": user.id} | kwargs
            with pytest.raises(Invalid):
                await repo.create_api_key(tx, **args)  # type: ignore[arg-type]


async def test_revoke_is_idempotent_and_hides_the_key(db: Database, digest: Callable[[], bytes]) -> None:
    _, user = await _owner(db)
    async with db.transaction() as tx:
        key = await repo.create_api_key(tx, name="k", prefix="sk-io-k", digest=digest(), user_id=user.id)
        live = await repo.create_api_key(tx, name="l", prefix="sk-io-l", digest=digest(), user_id=user.id)
    async with db.transaction() as tx:
        revoked = await repo.revoke_api_key(tx, key.id, now=NOW)
        again = await repo.revoke_api_key(tx, key.id, now=NOW + timedelta(days=1))
        with pytest.raises(NotFound):
            await repo.revoke_api_key(tx, "key_nope")
    assert revoked.revoked_at == NOW and again == revoked
    async with db.read() as session:
        assert (await repo.list_api_keys(session)).items == (live,)
        assert len((await repo.list_api_keys(session, include_revoked=True)).items) == 2
    identity = await repo.load_identity(db)
    assert [k.id for k in identity.keys] == [live.id]


async def test_rotate_overlap(db: Database, digest: Callable[[], bytes]) -> None:
    team_id, user = await _owner(db)
    far = NOW + timedelta(days=365)
    soon = NOW + timedelta(minutes=5)
    async with db.transaction() as tx:
        long_lived = await repo.create_api_key(tx, name="a", prefix="sk-io-a", digest=digest(),
                                               user_id=user.id, team_id=team_id, expires_at=far,
                                               scopes=["batch"], allowed_models=["m"])
        no_expiry = await repo.create_api_key(tx, name="b", prefix="sk-io-b", digest=digest(),
                                              user_id=user.id)
        ending = await repo.create_api_key(tx, name="c", prefix="sk-io-c", digest=digest(),
                                           user_id=user.id, expires_at=soon)
    hour = timedelta(hours=1)
    new_digest = digest()
    async with db.transaction() as tx:
        new = await repo.rotate_api_key(tx, long_lived.id, prefix="sk-io-n", digest=new_digest,
                                        overlap=hour, now=NOW)
        await repo.rotate_api_key(tx, no_expiry.id, prefix="sk-io-o", digest=digest(), overlap=hour, now=NOW)
        await repo.rotate_api_key(tx, ending.id, prefix="sk-io-p", digest=digest(), overlap=hour, now=NOW)
        old = await repo.get_api_key(tx, long_lived.id)
    assert new.rotated_from_id == long_lived.id and new.digest == new_digest and new.prefix == "sk-io-n"
    assert (new.name, new.user_id, new.team_id, new.scopes, new.allowed_models, new.expires_at) == (
        "a", user.id, team_id, frozenset({"batch"}), frozenset({"m"}), far)
    assert old.expires_at == NOW + hour and old.revoked_at is None  # both work during the overlap
    async with db.read() as session:
        assert (await repo.get_api_key(session, no_expiry.id)).expires_at == NOW + hour
        assert (await repo.get_api_key(session, ending.id)).expires_at == soon  # already sooner
    identity = await repo.load_identity(db)
    assert len(identity.keys) == 6
    assert {k.id: k.expires_at for k in identity.keys}[long_lived.id] == NOW + hour
    async with db.transaction() as tx:
        await repo.revoke_api_key(tx, new.id)
    with pytest.raises(Conflict, match="revoked"):
        async with db.transaction() as tx:
            await repo.rotate_api_key(tx, new.id, prefix="sk-io-q", digest=digest(), overlap=hour)
    # A key past its expiry stays lapsed: its successor would be born expired.
    with pytest.raises(Conflict, match="expired"):
        async with db.transaction() as tx:
            await repo.rotate_api_key(tx, no_expiry.id, prefix="sk-io-r", digest=digest(),
                                      overlap=hour, now=NOW + 2 * hour)


async def test_rotated_keys_share_the_lineage_their_usage_is_counted_under(
        db: Database, digest: Callable[[], bytes]) -> None:
    from inferenceops.store.snapshot_builder import build_identity

    team_id, user = await _owner(db)
    hour = timedelta(hours=1)
    first_digest, second_digest, third_digest = digest(), digest(), digest()
    async with db.transaction() as tx:
        await repo.set_membership(tx, team_id, user.id, "member")
        first = await repo.create_api_key(tx, name="a", prefix="sk-io-a", digest=first_digest,
                                          user_id=user.id, team_id=team_id)
        second = await repo.rotate_api_key(tx, first.id, prefix="sk-io-b", digest=second_digest,
                                           overlap=hour, now=NOW)
        third = await repo.rotate_api_key(tx, second.id, prefix="sk-io-c", digest=third_digest,
                                          overlap=hour, now=NOW)
    identity = await build_identity(db)
    meters = {identity.key(d).id: identity.key(d).meter  # type: ignore[union-attr]
              for d in (first_digest, second_digest, third_digest)}
    assert meters == {first.id: first.id, second.id: first.id, third.id: first.id}


async def test_touch_last_used_in_bulk(db: Database, digest: Callable[[], bytes]) -> None:
    _, user = await _owner(db)
    async with db.transaction() as tx:
        keys = [await repo.create_api_key(tx, name=str(i), prefix=f"sk-io-{i}", digest=digest(),
                                          user_id=user.id) for i in range(3)]
    ids = [k.id for k in keys]
    async with db.transaction() as tx:
        assert await repo.touch_last_used(tx, ids[:2] + ["key_gone"], NOW) == 2
        assert await repo.touch_last_used(tx, ids, NOW - timedelta(hours=1)) == 1  # never backwards
    async with db.read() as session:
        seen = [(await repo.get_api_key(session, i)).last_used_at for i in ids]
    assert seen == [NOW, NOW, NOW - timedelta(hours=1)]
