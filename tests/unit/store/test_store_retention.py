"""Body retention in the store: teams' settings, and a sweep that deletes exactly what is due.

The sweep is checked against an oracle over any history (hypothesis): bodies of teams in
every mode, of any age, written under any earlier setting; after a sweep what is left is
*exactly* the bodies of teams that store bodies now, inside their current days and not
past their own expiry — nothing due survives, nothing still kept is lost. On SQLite and
PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from inferenceops.platform.retention import DEFAULT, Retention
from inferenceops.retention.sweeper import RetentionSweeper
from inferenceops.store import Database, NotFound, repo
from inferenceops.store.repo import retention as retention_repo
from inferenceops.store.repo.retention import SWEEP_BATCH, insert_bodies, sweep
from inferenceops.store.tables_retention import RetainedBody, TeamRetention

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
TEAMS = ("t-a", "t-b", "t-c")


def body(team: str, at: datetime, days: int, request_id: str = "r") -> dict[str, Any]:
    return {"request_id": request_id, "at": at, "expires_at": at + timedelta(days=days),
            "team_id": team, "key_id": "k", "model": "m", "endpoint": "chat/completions",
            "stream": False, "status": 200, "request": "{}", "response": None, "truncated": False}


async def _bodies(db: Database) -> list[tuple[str, str]]:
    async with db.read() as tx:
        rows = await tx.execute(select(RetainedBody.team_id, RetainedBody.request_id)
                                .order_by(RetainedBody.id))
        return [(team, rid) for team, rid in rows]


async def test_a_teams_retention_is_read_set_and_cleared(db: Database) -> None:
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "keeper")
        assert (team.retention, team.retention_days) == ("none", None)
        await retention_repo.set_retention(tx, team.id, Retention("store", 30))
    async with db.read() as tx:
        got = await repo.get_team(tx, team.id)
        listed = (await repo.list_teams(tx)).items
    assert (got.retention, got.retention_days) == ("store", 30)
    assert [(t.retention, t.retention_days) for t in listed if t.id == team.id] == [("store", 30)]
    loaded = {t.id: t for t in (await repo.load_identity(db)).teams}
    assert (loaded[team.id].retention, loaded[team.id].retention_days) == ("store", 30)
    async with db.transaction() as tx:
        await retention_repo.set_retention(tx, team.id, Retention("zero"))
        assert (await repo.get_team(tx, team.id)).retention == "zero"
        await retention_repo.set_retention(tx, team.id, DEFAULT)
        rows = (await tx.execute(select(TeamRetention))).scalars().all()
    assert rows == []  # the default is no row at all


async def test_setting_retention_bumps_the_revision_only_when_it_changes(db: Database) -> None:
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "rev")
    async with db.transaction() as tx:
        before = await repo.revision(tx)
        await retention_repo.set_retention(tx, team.id, Retention("zero"))
        changed = await repo.revision(tx)
        await retention_repo.set_retention(tx, team.id, Retention("zero"))
        same = await repo.revision(tx)
    assert changed > before and same == changed


async def test_retention_of_an_unknown_team_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        async with db.transaction() as tx:
            await retention_repo.set_retention(tx, "team_nope", Retention("zero"))


async def test_a_deleted_team_takes_its_setting_along(db: Database) -> None:
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "gone")
        await retention_repo.set_retention(tx, team.id, Retention("store", 3))
    async with db.transaction() as tx:
        await repo.delete_team(tx, team.id)
    async with db.read() as tx:
        assert (await tx.execute(select(TeamRetention))).scalars().all() == []


async def test_the_sweep_goes_in_batches_until_nothing_is_due(db: Database) -> None:
    old = NOW - timedelta(days=2)
    async with db.transaction() as tx:
        await insert_bodies(tx, [body("t-a", old, 1, f"r{i}") for i in range(SWEEP_BATCH + 5)])
        await insert_bodies(tx, [body("t-a", NOW, 1, "fresh")])
    sweeper = RetentionSweeper(db.url, lambda: {"t-a": Retention("store", 1)}, interval_s=60,
                               clock=NOW.timestamp, pause_s=0)
    try:
        assert await sweeper.run_once() == SWEEP_BATCH + 5
    finally:
        await sweeper.stop()
    assert await _bodies(db) == [("t-a", "fresh")]


async def test_export_filters_by_team_time_and_request_and_pages_by_id(db: Database) -> None:
    async with db.transaction() as tx:
        await insert_bodies(tx, [body("t-a", NOW - timedelta(hours=h), 7, f"a{h}") for h in range(5)])
        await insert_bodies(tx, [body("t-b", NOW, 7, "b0")])
    async with db.read() as tx:
        page = await retention_repo.export_bodies(tx, team_id="t-a", since=None, until=None, limit=3)
        rest = await retention_repo.export_bodies(tx, team_id="t-a", since=None, until=None,
                                                  after=page[-1]["id"], limit=3)
        recent = await retention_repo.export_bodies(tx, team_id=None, since=NOW - timedelta(hours=1),
                                                    until=NOW + timedelta(seconds=1))
        one = await retention_repo.export_bodies(tx, team_id=None, since=None, until=None,
                                                 request_id="a3")
    assert [r["request_id"] for r in page + rest] == ["a0", "a1", "a2", "a3", "a4"]
    assert {r["request_id"] for r in recent} == {"a0", "a1", "b0"}
    assert [r["request_id"] for r in one] == ["a3"]


modes = st.sampled_from([Retention("none"), Retention("zero"), Retention("store", 1),
                         Retention("store", 3), Retention("store", 7)])
#: (team, age in hours, days it was written to be kept): ages land on the boundaries too.
rows = st.lists(st.tuples(st.sampled_from(TEAMS), st.integers(0, 240), st.sampled_from([1, 3, 7])),
                max_size=30)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(now_modes=st.fixed_dictionaries({t: modes for t in TEAMS}), written=rows)
async def test_a_sweep_leaves_exactly_what_is_still_kept(db: Database, now_modes: dict[str, Retention],
                                                         written: list[tuple[str, int, int]]) -> None:
    async with db.transaction() as tx:
        await tx.execute(delete(RetainedBody))
        await insert_bodies(tx, [body(team, NOW - timedelta(hours=age), days, f"r{i}")
                                 for i, (team, age, days) in enumerate(written)])
    keep = {t: r.days for t, r in now_modes.items() if r.stores and r.days is not None}
    async with db.transaction() as tx:
        while await sweep(tx, NOW, keep) == SWEEP_BATCH:
            pass
    expected = [(team, f"r{i}") for i, (team, age, days) in enumerate(written)
                if team in keep and age <= 24 * keep[team] and age < 24 * days]
    assert await _bodies(db) == expected


async def test_the_sweep_keeps_a_body_exactly_its_teams_days_old_and_not_a_second_more(
        db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute(delete(RetainedBody))
        await insert_bodies(tx, [body("t-a", NOW - timedelta(days=3), 7, "edge"),
                                 body("t-a", NOW - timedelta(days=3, seconds=1), 7, "past"),
                                 body("t-b", NOW - timedelta(days=1), 1, "expired-now")])
    async with db.transaction() as tx:
        await sweep(tx, NOW, {"t-a": 3, "t-b": 7})
    assert await _bodies(db) == [("t-a", "edge")]
