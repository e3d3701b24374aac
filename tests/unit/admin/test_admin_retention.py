"""Teams' body retention and the compliance export through the admin API, against a real
store (SQLite, PostgreSQL).

The world of ``test_admin_api`` (teams A and B, a person per role). Proves: a retention
that makes no sense is refused naming the field; ``retention_days`` goes with ``store``
(alone it changes the days; leaving ``store`` drops them); every change is audited with
before and after; the export returns only what it was asked for, pages, refuses a range
that ends before it starts, and each page read is itself an audit entry naming its filter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from tests.support.postgres import Postgres, probe
from tests.unit.admin.test_admin_api import CIPHER, HASHER, V1, World, call, seed

from inferenceops.admin.api import build_admin_app
from inferenceops.store import Database
from inferenceops.store.migrate import upgrade
from inferenceops.store.repo.audit import list_audit
from inferenceops.store.repo.retention import insert_bodies

pytestmark = pytest.mark.asyncio(loop_scope="module")
NOW = datetime.now(UTC)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[World]:
    pg: Postgres | None = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('admin-retention') / 'store.db'}"
    else:
        dsn, reason = await probe()
        if dsn is None:
            pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 ({reason})")
        pg = Postgres(dsn)
        url = pg.url(await pg.create())
    await upgrade(url)
    db = Database(url)
    try:
        world = await seed(db)
        world.app = build_admin_app(db, HASHER, cipher=CIPHER)
        async with db.transaction() as tx:
            await insert_bodies(tx, [{
                "request_id": f"{team}-{i}", "at": NOW - timedelta(minutes=10 - i),
                "expires_at": NOW + timedelta(days=7), "team_id": world.ids[team],
                "key_id": "key_x", "model": "chat", "endpoint": "chat/completions",
                "stream": False, "status": 200, "request": '{"messages": "[EMAIL]"}',
                "response": "not json [CARD]", "truncated": False}
                for team in ("A", "B") for i in range(3)])
        yield world
    finally:
        await db.close()
        if pg is not None:
            for name in list(pg.created):
                await pg.drop(name)


async def admin(world: World, method: str, path: str, body: Any = None,
                role: str = "admin") -> tuple[int, Any]:
    reply = await call(world.app, method, V1 + path, body, secret=world.secrets[role])
    return reply.status, reply.json() if reply.body else None


@pytest.mark.parametrize("body", [{"retention": "store"}, {"retention": "none", "retention_days": 3},
                                  {"retention": "zero", "retention_days": 3},
                                  {"retention": "store", "retention_days": 0},
                                  {"retention": "forever"}, {"retention": None}])
async def test_a_team_created_with_a_retention_that_makes_no_sense_is_refused(
        world: World, body: dict[str, Any]) -> None:
    status, reply = await admin(world, "POST", "/teams", {"name": world.unique("t"), **body})
    assert status in (400, 422), reply
    assert reply["error"]["param"] in ("retention", "retention_days")


async def test_retention_days_go_with_store_and_every_change_is_audited(world: World) -> None:
    status, team = await admin(world, "POST", "/teams", {"name": world.unique("legal"),
                                                         "retention": "store", "retention_days": 30})
    assert status == 201 and (team["retention"], team["retention_days"]) == ("store", 30)
    path = f"/teams/{team['id']}"
    status, changed = await admin(world, "PATCH", path, {"retention_days": 5})
    assert status == 200 and (changed["retention"], changed["retention_days"]) == ("store", 5)
    status, zero = await admin(world, "PATCH", path, {"retention": "zero"})
    assert status == 200 and (zero["retention"], zero["retention_days"]) == ("zero", None)
    status, refused = await admin(world, "PATCH", path, {"retention_days": 9})
    assert status in (400, 422) and refused["error"]["param"] == "retention_days"
    status, refused = await admin(world, "PATCH", path, {"retention": "store"})
    assert status in (400, 422) and refused["error"]["param"] == "retention_days"
    async with world.db.read() as tx:
        entries = (await list_audit(tx, target_id=team["id"], limit=100)).items
    changes = [(e.action, (e.before or {}).get("retention"), (e.after or {}).get("retention"),
                (e.after or {}).get("retention_days")) for e in entries]
    assert changes == [("team.create", None, "store", 30), ("team.update", "store", "store", 5),
                       ("team.update", "store", "zero", None)]


async def test_the_export_returns_what_was_asked_pages_and_audits_each_read(world: World) -> None:
    status, first = await call_export(world, f"team_id={world.ids['A']}&limit=2", "auditor")
    assert status == 200
    assert [b["request_id"] for b in first["data"]] == ["A-0", "A-1"] and first["next_after"]
    status, rest = await call_export(world, f"team_id={world.ids['A']}&limit=2"
                                            f"&after={first['next_after']}", "auditor")
    assert [b["request_id"] for b in rest["data"]] == ["A-2"] and rest["next_after"] is None
    assert first["data"][0]["request"] == {"messages": "[EMAIL]"}  # JSON where it is JSON
    assert first["data"][0]["response"] == "not json [CARD]"
    status, one = await call_export(world, "request_id=B-1", "admin")
    assert [b["request_id"] for b in one["data"]] == ["B-1"]
    async with world.db.read() as tx:
        reads = [e for e in (await list_audit(tx, action="retained_bodies.read", limit=100)).items]
    assert [(e.actor, e.target_id, (e.after or {}).get("returned")) for e in reads] == [
        (world.actors["auditor"], world.ids["A"], 2), (world.actors["auditor"], world.ids["A"], 1),
        (world.actors["admin"], "*", 1)]


async def test_an_export_range_that_ends_before_it_starts_is_400_naming_until(world: World) -> None:
    status, body = await call_export(world, "since=2026-12-05T10:00:00Z&until=2026-12-05T09:00:00Z",
                                     "admin")
    assert status == 400 and body["error"]["param"] == "until"


async def call_export(world: World, query: str, role: str) -> tuple[int, Any]:
    return await admin(world, "GET", f"/retained-bodies?{query}", role=role)
