"""Limits, budgets, team weights and background-only keys in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from inferenceops.platform.policy import Period, Scope
from inferenceops.store import Database, Invalid, NotFound, repo
from inferenceops.store.records import ApiKeyRecord, TeamRecord
from inferenceops.store.snapshot_builder import build_identity_and_rules
from inferenceops.store.tables_admission import BUDGET_SCOPES, LIMIT_SCOPES, PERIODS


async def _revision(db: Database) -> int:
    async with db.read() as session:
        return await repo.revision(session)


async def _world(db: Database, digest: Callable[[], bytes]) -> tuple[TeamRecord, ApiKeyRecord]:
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "t")
        user = await repo.create_user(tx, "u@x.io")
        await repo.set_membership(tx, team.id, user.id, "member")
        key = await repo.create_api_key(tx, name="k", prefix="sk-io-k", digest=digest(),
                                        user_id=user.id, team_id=team.id)
    return team, key


def test_schema_values_match_the_policy_enums() -> None:
    assert tuple(s.value for s in Scope) == LIMIT_SCOPES
    assert set(BUDGET_SCOPES) == {Scope.TEAM.value, Scope.KEY.value}
    assert tuple(p.value for p in Period) == PERIODS


async def test_set_limit_creates_then_replaces(db: Database, digest: Callable[[], bytes]) -> None:
    team, key = await _world(db, digest)
    start = await _revision(db)
    async with db.transaction() as tx:
        first, created = await repo.set_limit(tx, scope="team", team_id=team.id, rpm=10, tpm=1000)
    assert created and first.id.startswith("lim_") and (first.rpm, first.tpm) == (10, 1000)
    async with db.transaction() as tx:
        second, created = await repo.set_limit(tx, scope="team", team_id=team.id, concurrency=2)
    assert not created and second.id == first.id
    assert (second.rpm, second.tpm, second.concurrency) == (None, None, 2)  # replaced whole
    assert second.created_at == first.created_at and second.updated_at >= first.updated_at
    assert await _revision(db) == start + 2
    async with db.transaction() as tx:
        by_key, _ = await repo.set_limit(tx, scope="key", key_id=key.id, rpm=5)
        by_model, _ = await repo.set_limit(tx, scope="model", model=" llama ", tpm=7)
        both, _ = await repo.set_limit(tx, scope="team_model", team_id=team.id, model="llama", rpm=1)
        assert await repo.find_limit(tx, scope="model", model="llama") == by_model
        assert await repo.find_limit(tx, scope="team_model", team_id=team.id, model="other") is None
    assert by_model.model == "llama" and both.scope == "team_model"
    async with db.read() as session:
        assert await repo.get_limit(session, by_key.id) == by_key
        everything = (await repo.list_limits(session)).items
        assert {r.id for r in everything} == {first.id, by_key.id, by_model.id, both.id}
        of_team = (await repo.list_limits(session, team_id=team.id)).items  # includes its keys'
        assert {r.id for r in of_team} == {first.id, by_key.id, both.id}
        assert [r.id for r in (await repo.list_limits(session, scope="model")).items] == [by_model.id]
        assert [r.id for r in (await repo.list_limits(session, key_id=key.id)).items] == [by_key.id]
        assert {r.id for r in (await repo.list_limits(session, model="llama")).items} == {
            by_model.id, both.id}
        one = await repo.list_limits(session, limit=1)
        rest = await repo.list_limits(session, after=one.next_after)
    assert [r.id for r in one.items + rest.items] == sorted(r.id for r in everything)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"scope": "user", "rpm": 1}, "scope"),
    ({"scope": "team", "rpm": 1}, "team_id"),
    ({"scope": "team", "team_id": "T", "model": "m", "rpm": 1}, "model"),
    ({"scope": "key", "key_id": "K", "team_id": "T", "rpm": 1}, "team_id"),
    ({"scope": "model", "model": "  ", "rpm": 1}, "model"),
    ({"scope": "team_model", "team_id": "T", "rpm": 1}, "model"),
    ({"scope": "team", "team_id": "T"}, "rpm"),
    ({"scope": "team", "team_id": "T", "rpm": 0}, "rpm"),
    ({"scope": "team", "team_id": "T", "tpm": -5}, "tpm"),
    ({"scope": "team", "team_id": "T", "concurrency": 2**53}, "concurrency"),
])
async def test_bad_limits_are_invalid_naming_the_field(
        db: Database, digest: Callable[[], bytes], kwargs: dict[str, object], field: str) -> None:
    team, key = await _world(db, digest)
    resolved = {k: {"T": team.id, "K": key.id}.get(v, v) if isinstance(v, str) else v
                for k, v in kwargs.items()}
    start = await _revision(db)
    with pytest.raises(Invalid) as caught:
        async with db.transaction() as tx:
            await repo.set_limit(tx, **resolved)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert await _revision(db) == start


async def test_unknown_ids_are_not_found(db: Database) -> None:
    async with db.transaction() as tx:
        for call in (repo.set_limit(tx, scope="team", team_id="team_nope", rpm=1),
                     repo.set_limit(tx, scope="key", key_id="key_nope", rpm=1),
                     repo.set_budget(tx, scope="team", team_id="team_nope", amount_nanos=1,
                                     currency="USD", period="daily"),
                     repo.get_limit(tx, "lim_nope"), repo.delete_limit(tx, "lim_nope"),
                     repo.get_budget(tx, "bgt_nope"), repo.delete_budget(tx, "bgt_nope"),
                     repo.set_team_weight(tx, "team_nope", 3)):
            with pytest.raises(NotFound):
                await call


async def test_budgets_per_subject_and_period(db: Database, digest: Callable[[], bytes]) -> None:
    team, key = await _world(db, digest)
    async with db.transaction() as tx:
        monthly, created = await repo.set_budget(tx, scope="team", team_id=team.id,
                                                 amount_nanos=500 * 10**9, currency="USD",
                                                 period="monthly")
        assert created and monthly.id.startswith("bgt_") and monthly.mode == "hard"
        daily, created = await repo.set_budget(tx, scope="team", team_id=team.id, amount_nanos=10**9,
                                               currency="USD", period="daily", mode="soft")
        assert created and daily.id != monthly.id
        again, created = await repo.set_budget(tx, scope="team", team_id=team.id, amount_nanos=7,
                                               currency="USD", period="monthly", mode="soft")
        assert not created and again.id == monthly.id and (again.amount_nanos, again.mode) == (7, "soft")
        on_key, _ = await repo.set_budget(tx, scope="key", key_id=key.id, amount_nanos=3,
                                          currency="USD", period="lifetime")
        assert await repo.find_budget(tx, scope="team", team_id=team.id, period="daily") == daily
    async with db.read() as session:
        assert {b.id for b in (await repo.list_budgets(session, team_id=team.id)).items} == {
            monthly.id, daily.id, on_key.id}
        assert [b.id for b in (await repo.list_budgets(session, period="lifetime")).items] == [on_key.id]
        assert [b.id for b in (await repo.list_budgets(session, scope="key")).items] == [on_key.id]
    async with db.transaction() as tx:
        await repo.delete_budget(tx, daily.id)
        with pytest.raises(NotFound):
            await repo.get_budget(tx, daily.id)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"scope": "model", "amount_nanos": 1}, "scope"),
    ({"scope": "team", "amount_nanos": 1}, "team_id"),
    ({"scope": "team", "team_id": "T", "key_id": "K", "amount_nanos": 1}, "key_id"),
    ({"scope": "team", "team_id": "T", "amount_nanos": 0}, "amount_nanos"),
    ({"scope": "team", "team_id": "T", "amount_nanos": 1, "currency": "XYZ"}, "currency"),
    ({"scope": "team", "team_id": "T", "amount_nanos": 1, "period": "hourly"}, "period"),
    ({"scope": "team", "team_id": "T", "amount_nanos": 1, "mode": "strict"}, "mode"),
])
async def test_bad_budgets_are_invalid_naming_the_field(
        db: Database, digest: Callable[[], bytes], kwargs: dict[str, object], field: str) -> None:
    team, key = await _world(db, digest)
    values: dict[str, object] = {"currency": "USD", "period": "monthly"}
    values.update({k: {"T": team.id, "K": key.id}.get(v, v) if isinstance(v, str) else v
                   for k, v in kwargs.items()})
    with pytest.raises(Invalid) as caught:
        async with db.transaction() as tx:
            await repo.set_budget(tx, **values)  # type: ignore[arg-type]
    assert caught.value.field == field


async def test_rules_go_with_their_team_or_key(db: Database, digest: Callable[[], bytes]) -> None:
    team, key = await _world(db, digest)
    async with db.transaction() as tx:
        await repo.set_limit(tx, scope="key", key_id=key.id, rpm=1)
        await repo.set_limit(tx, scope="team_model", team_id=team.id, model="m", rpm=1)
        await repo.set_budget(tx, scope="team", team_id=team.id, amount_nanos=1, currency="USD",
                              period="daily")
        model_wide, _ = await repo.set_limit(tx, scope="model", model="m", rpm=1)
        await repo.delete_team(tx, team.id)  # cascades to its keys, and to the rules of both
    async with db.read() as session:
        assert [r.id for r in (await repo.list_limits(session)).items] == [model_wide.id]
        assert (await repo.list_budgets(session)).items == ()


async def test_rotation_copies_the_keys_rules(db: Database, digest: Callable[[], bytes]) -> None:
    _, key = await _world(db, digest)
    async with db.transaction() as tx:
        await repo.set_limit(tx, scope="key", key_id=key.id, rpm=3, concurrency=1)
        await repo.set_budget(tx, scope="key", key_id=key.id, amount_nanos=9, currency="USD",
                              period="weekly", mode="soft")
        new = await repo.rotate_api_key(tx, key.id, prefix="sk-io-n", digest=digest(),
                                        overlap=timedelta(0))
    async with db.read() as session:
        (limit,) = (await repo.list_limits(session, key_id=new.id)).items
        (budget,) = (await repo.list_budgets(session, key_id=new.id)).items
        assert len((await repo.list_limits(session, key_id=key.id)).items) == 1  # the old one stays
    assert (limit.rpm, limit.tpm, limit.concurrency) == (3, None, 1)
    assert (budget.amount_nanos, budget.period, budget.mode) == (9, "weekly", "soft")


async def test_team_weight(db: Database) -> None:
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "t")
    start = await _revision(db)
    async with db.transaction() as tx:
        heavier = await repo.set_team_weight(tx, team.id, 5)
        same = await repo.set_team_weight(tx, team.id, 5)  # no change: no bump
    assert heavier.weight == same.weight == 5 and await _revision(db) == start + 1
    with pytest.raises(Invalid) as caught:
        async with db.transaction() as tx:
            await repo.set_team_weight(tx, team.id, 0)
    assert caught.value.field == "weight"


async def test_load_identity_reads_rules_and_background_keys(
        db: Database, digest: Callable[[], bytes]) -> None:
    team, key = await _world(db, digest)
    async with db.transaction() as tx:
        user = await repo.create_user(tx, "bg@x.io")
        await repo.set_membership(tx, team.id, user.id, "member")
        background = await repo.create_api_key(tx, name="bg", prefix="sk-io-bg", digest=digest(),
                                               user_id=user.id, team_id=team.id, background_only=True)
        limit, _ = await repo.set_limit(tx, scope="team", team_id=team.id, tpm=100)
        budget, _ = await repo.set_budget(tx, scope="key", key_id=key.id, amount_nanos=5,
                                          currency="EUR", period="daily")
    assert background.background_only and not key.background_only
    data = await repo.load_identity(db)
    flags = {k.id: k.background_only for k in data.keys}
    assert flags == {key.id: False, background.id: True}
    assert data.limits == (limit,) and data.budgets == (budget,)
    async with db.read() as session:
        assert (await repo.get_api_key(session, background.id)).background_only
    identity, rules = await build_identity_and_rules(db)  # what the data plane gets
    assert identity.key(background.digest).background_only is True  # type: ignore[union-attr]
    assert identity.key(key.digest).background_only is False  # type: ignore[union-attr]
    assert rules.limits == (limit,)


async def test_concurrent_sets_of_one_subject_make_one_limit(db: Database) -> None:
    """Racing writers: one creates, the others replace (the unique subject + a savepoint retry)."""
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "t")

    async def set_rpm(rpm: int) -> bool:
        async with db.transaction() as tx:
            _, created = await repo.set_limit(tx, scope="team", team_id=team.id, rpm=rpm)
            await asyncio.sleep(0.01)  # hold the transaction open while the others try
            return created

    results = await asyncio.gather(*(set_rpm(rpm) for rpm in range(1, 7)))
    assert sorted(results) == [False] * 5 + [True]
    async with db.read() as session:
        (only,) = (await repo.list_limits(session)).items
    assert only.rpm in range(1, 7)
