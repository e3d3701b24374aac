"""What ``GET /v1/usage`` reads from real rollups (SQLite and PostgreSQL): each key its team's
usage, a key without a team its own lineage's, nothing of anyone else; bounded, and 503 when
the store cannot answer.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest
from tests.unit.store import conftest as store

from inferenceops.control.usage_reads import UsageReads
from inferenceops.errors import Unavailable
from inferenceops.metering.own_usage import own_usage_query
from inferenceops.outbox import UsageRecord
from inferenceops.platform import ApiKey, Principal
from inferenceops.store import Database, repo
from inferenceops.store.repo.usage import insert_usage
from inferenceops.store.repo.usage_rollups import roll_up

postgres, templates, backend, store_url, db = (store.postgres, store.templates, store.backend,
                                               store.store_url, store.db)

NOW = datetime(2026, 12, 4, 12, 30, tzinfo=UTC)
WEEK = {"from": ["2026-11-28"], "to": ["2026-12-05"]}


def used(n: int, key: str, team: str | None, model: str, cost: int) -> UsageRecord:
    return UsageRecord(f"req-{n}", (NOW - timedelta(hours=n)).timestamp(), key, team, "usr", "user",
                       model, "dep", None, "chat", "interactive", False, 10, 2, True, cost, 200,
                       None, 1.0, None)


def api_key(key_id: str, team: str | None, meter: str = "") -> ApiKey:
    return ApiKey(key_id, "sk-io-x", Principal("usr"), team, frozenset({"inference"}), meter_id=meter)


@pytest.fixture
async def world(db: Database) -> dict[str, str]:
    """Teams A and B with a key each; a platform admin's key rotated once (one lineage of two)
    and another teamless key; usage for all of them, rolled up."""
    ids: dict[str, str] = {}
    async with db.transaction() as tx:
        user = await repo.create_user(tx, "root@example.com", platform_role="platform-admin")
        for name in ("A", "B"):
            team = await repo.create_team(tx, f"team-{name}")
            ids[name] = team.id
            ids[f"key{name}"] = (await repo.create_api_key(
                tx, name=name, prefix="sk-io-x", digest=os.urandom(32), user_id=user.id,
                team_id=team.id)).id
        first = await repo.create_api_key(tx, name="solo", prefix="sk-io-x", digest=os.urandom(32),
                                          user_id=user.id)
        second = await repo.rotate_api_key(tx, first.id, prefix="sk-io-y", digest=os.urandom(32),
                                           overlap=timedelta(0))
        other = await repo.create_api_key(tx, name="other", prefix="sk-io-z", digest=os.urandom(32),
                                          user_id=user.id)
        ids.update(solo1=first.id, solo2=second.id, other=other.id)
    records = [used(1, ids["keyA"], ids["A"], "m1", 100), used(2, ids["keyA"], ids["A"], "m2", 200),
               used(30, ids["keyA"], ids["A"], "m1", 400), used(3, ids["keyB"], ids["B"], "m1", 10**6),
               used(4, ids["solo1"], None, "m1", 7), used(5, ids["solo2"], None, "m1", 8),
               used(6, ids["other"], None, "m2", 9_000)]
    async with db.transaction() as tx:
        await insert_usage(tx, records)
    async with db.transaction() as tx:
        assert (await roll_up(tx, NOW, step_hours=48)).caught_up
    return ids


async def read(url: str, key: ApiKey, params: dict[str, list[str]] = WEEK) -> list[tuple[str, str, int]]:
    reads = UsageReads(url)
    try:
        report = await reads.report(own_usage_query(key, params, NOW))
    finally:
        await reads.stop()
    return [(row.start.date().isoformat(), str(row.dims[0]), row.measures[-1]) for row in report.rows]


async def test_a_team_key_reads_its_team_and_nothing_else(store_url: str, world: dict[str, str]) -> None:
    assert await read(store_url, api_key("any-key-of-A", world["A"])) == [
        ("2026-12-03", "m1", 400), ("2026-12-04", "m1", 100), ("2026-12-04", "m2", 200)]
    assert await read(store_url, api_key(world["keyB"], world["B"])) == [("2026-12-04", "m1", 10**6)]
    assert await read(store_url, api_key("key-of-C", "team-C-id")) == []
    # A model filter narrows within the team; it never reaches another team's rows.
    assert await read(store_url, api_key(world["keyB"], world["B"]), {**WEEK, "model": ["m2"]}) == []


async def test_a_key_without_a_team_reads_its_lineage(store_url: str, world: dict[str, str]) -> None:
    rotated = api_key(world["solo2"], None, meter=world["solo1"])
    assert await read(store_url, rotated) == [("2026-12-04", "m1", 15)]  # both keys of the lineage
    assert await read(store_url, api_key(world["other"], None)) == [("2026-12-04", "m2", 9_000)]
    assert await read(store_url, api_key("key_nobody", None)) == []


async def test_reads_are_bounded_and_a_dead_store_is_503(store_url: str, world: dict[str, str]) -> None:
    reads = UsageReads(store_url, concurrent=1, timeout_s=0.2)
    query = own_usage_query(api_key(world["keyA"], world["A"]), WEEK, NOW)
    try:
        async with reads._slots:  # another report holds the only slot
            with pytest.raises(Unavailable) as waited:
                await reads.report(query)
        assert waited.value.code == "usage_unavailable" and waited.value.status == 503
        assert (await reads.report(query)).totals[0] == 3
    finally:
        await reads.stop()
    dead = UsageReads("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    with pytest.raises(Unavailable) as down:
        await dead.report(query)
    assert down.value.headers["Retry-After"] == "5"
    await dead.stop()


async def test_a_report_waits_for_a_slot_rather_than_failing(store_url: str,
                                                             world: dict[str, str]) -> None:
    reads = UsageReads(store_url, concurrent=1)
    query = own_usage_query(api_key(world["keyA"], world["A"]), WEEK, NOW)
    try:
        reports = await asyncio.gather(*(reads.report(query) for _ in range(5)))
    finally:
        await reads.stop()
    assert {r.totals[0] for r in reports} == {3}
