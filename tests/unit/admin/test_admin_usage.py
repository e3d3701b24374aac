"""``GET /admin/api/v1/usage`` and ``/usage.csv`` against a real store (SQLite, PostgreSQL).

The world of ``test_admin_api`` (teams A and B, a person per role, each with an admin key)
with usage recorded for some of those keys and rolled up. Each role sees exactly its share
— platform roles everything, owners their team, members and viewers their own keys — and
no filter widens that; JSON and CSV say the same; bad input is a 4xx naming the parameter,
never a 500 (also for text hypothesis makes up).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.postgres import Postgres, probe
from tests.unit.admin.test_admin_api import V1, World, call, seed

from inferenceops.outbox.records import UsageRecord
from inferenceops.store import Database
from inferenceops.store.migrate import upgrade
from inferenceops.store.repo.usage import insert_usage
from inferenceops.store.repo.usage_rollups import roll_up

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOW = datetime(2026, 12, 4, 12, 30, tzinfo=UTC)
RANGE = "from=2026-12-01&to=2026-12-05"
#: (role whose key made the requests, model, hours before NOW, cost in nanos)
USED = [("memberA", "model-A", 1, 1_000), ("memberA", "model-A", 30, 2_000),
        ("ownerA", "=HYPERLINK(1)", 2, 40_000), ("ownerB", "model-B", 3, 500_000),
        ("admin", "model-A", 4, 7)]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[World]:
    pg: Postgres | None = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('admin-usage') / 'store.db'}"
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
        records = [UsageRecord(f"r{i}", (NOW - timedelta(hours=ago)).timestamp(),
                               world.ids[f"{role}_key"], world.ids.get(_team(role)), "p", "user",
                               model, "dep", None, "chat", "interactive", False, 100, 10, True, cost,
                               200, None, 1.0, None)
                   for i, (role, model, ago, cost) in enumerate(USED)]
        async with db.transaction() as tx:
            await insert_usage(tx, records)
        async with db.transaction() as tx:
            assert (await roll_up(tx, NOW, step_hours=48)).caught_up
        yield world
    finally:
        await db.close()
        if pg is not None:
            for name in list(pg.created):
                await pg.drop(name)


def _team(role: str) -> str:
    return {"memberA": "A", "ownerA": "A", "ownerB": "B"}.get(role, "none")


async def keys_seen(world: World, role: str, query: str = "") -> set[str]:
    reply = await call(world.app, "GET", f"{V1}/usage?{RANGE}&group_by=key{query}",
                       secret=world.secrets[role])
    assert reply.status == 200, reply.body
    return {row["key_id"] for row in reply.json()["data"]}


EVERY_KEY = {"memberA", "ownerA", "ownerB", "admin"}


@pytest.mark.parametrize(("role", "sees"), [
    ("admin", EVERY_KEY), ("auditor", EVERY_KEY), ("billing", EVERY_KEY), ("ownerA", {"memberA", "ownerA"}),
    ("memberA", {"memberA"}), ("viewerA", set()), ("ownerB", {"ownerB"}), ("saA", set()),
])
async def test_each_role_sees_its_share_and_no_more(world: World, role: str, sees: set[str]) -> None:
    assert await keys_seen(world, role) == {world.ids[f"{r}_key"] for r in sees}


async def test_filters_narrow_and_never_widen(world: World) -> None:
    ids, member = world.ids, world.secrets["memberA"]
    assert await keys_seen(world, "memberA", f"&team_id={ids['A']}") == {ids["memberA_key"]}
    assert await keys_seen(world, "ownerA", "&model=model-A") == {ids["memberA_key"]}
    assert await keys_seen(world, "ownerB", "&model=model-A") == set()
    assert await keys_seen(world, "admin", f"&team_id={ids['B']}") == {ids["ownerB_key"]}
    assert await keys_seen(world, "billing", "&key_id=key_deleted_long_ago") == set()
    for role, query in (("memberA", f"team_id={ids['B']}"), ("memberA", f"key_id={ids['ownerA_key']}"),
                        ("ownerA", f"key_id={ids['ownerB_key']}"), ("ownerA", f"team_id={ids['B']}"),
                        ("viewerA", f"key_id={ids['memberA_key']}"), ("ownerA", "key_id=key_nope")):
        for path in ("/usage", "/usage.csv"):
            reply = await call(world.app, "GET", f"{V1}{path}?{query}", secret=world.secrets[role])
            assert reply.status == 404, (role, query, reply.body)
            assert reply.json()["error"]["code"] == "not_found"
    reply = await call(world.app, "GET", f"{V1}/usage?{RANGE}", secret=member)
    assert reply.json()["totals"]["cost_nanos"] == 3_000  # only their two requests


async def test_the_report_sums_rows_and_the_csv_says_the_same(world: World) -> None:
    admin = world.secrets["admin"]
    path = f"{V1}/usage?{RANGE}&group_by=team&group_by=model&granularity=day"
    doc = (await call(world.app, "GET", path, secret=admin)).json()
    assert doc["object"] == "usage.report" and doc["currency"] == "USD"
    assert (doc["from"], doc["to"]) == ("2026-12-01T00:00:00+00:00", "2026-12-05T00:00:00+00:00")
    assert doc["group_by"] == ["team", "model"] and doc["current_to"] == NOW.isoformat()
    assert doc["totals"]["requests"] == len(USED) == sum(r["requests"] for r in doc["data"])
    assert doc["totals"]["cost_nanos"] == 543_007 and doc["totals"]["cost"] == "0.000543007"
    assert [row["start"][:10] for row in doc["data"]] == ["2026-12-03"] + ["2026-12-04"] * 4
    assert doc["data"][1]["team_id"] is None  # the admin's key has no team: first in its day
    for reply in (await call(world.app, "GET", path.replace("/usage?", "/usage.csv?"), secret=admin),
                  await call(world.app, "GET", path + "&format=csv", secret=admin)):
        assert reply.status == 200 and reply.headers["content-type"] == "text/csv; charset=utf-8"
        assert reply.headers["content-disposition"] == (
            'attachment; filename="usage-day-20261201T0000Z-20261205T0000Z.csv"')
        table = list(csv.DictReader(io.StringIO(reply.body.decode())))
        assert len(table) == len(doc["data"])
        for line, row in zip(table, doc["data"], strict=True):
            assert line["start"] == row["start"] and int(line["cost_nanos"]) == row["cost_nanos"]
            assert line["team_id"] == (row["team_id"] or "")
            assert line["model"] == ("'" + row["model"] if row["model"].startswith("=") else row["model"])


async def test_hours_are_hours(world: World) -> None:
    doc = (await call(world.app, "GET", f"{V1}/usage?from=2026-12-04T07:45:00Z&to=2026-12-04T12:10"
                      "%2B00:00&granularity=hour", secret=world.secrets["admin"])).json()
    assert (doc["from"], doc["to"]) == ("2026-12-04T07:00:00+00:00", "2026-12-04T13:00:00+00:00")
    assert [(row["start"][11:13], row["requests"]) for row in doc["data"]] == [
        ("08", 1), ("09", 1), ("10", 1), ("11", 1)]


@pytest.mark.parametrize(("query", "status", "param"), [
    ("from=yesterday", 400, "from"),
    ("from=2026-12-01T10:00:00", 400, "from"),  # no offset
    ("to=2026-13-01", 400, "to"),
    ("from=2026-12-05&to=2026-12-01", 400, "to"),
    ("from=2026-12-01T10:00:00Z&to=2026-12-01T10:00:00Z", 400, "to"),
    ("from=2026-10-01&to=2026-12-01&granularity=hour", 400, "from"),
    ("from=2024-01-01&to=2026-12-01", 400, "from"),
    ("group_by=team,colour", 400, "group_by"),
    ("granularity=week", 422, "granularity"),
    ("format=xml", 422, "format"),
    ("from=0001-01-01T00:00:00%2B01:00", 400, "from"),
    ("to=9999-12-31T23:59:59-01:00", 400, "to"),
    ("to=9999-12-31T12:00:00Z", 400, "to"),  # its day ends past the calendar
])
@pytest.mark.parametrize("path", ["/usage", "/usage.csv"])
async def test_bad_input_is_a_4xx_naming_the_parameter(world: World, path: str, query: str,
                                                     status: int, param: str) -> None:
    if path == "/usage.csv" and param == "format":
        status, param = 200, ""  # /usage.csv has no format parameter: it is ignored
    reply = await call(world.app, "GET", f"{V1}{path}?{query}", secret=world.secrets["ownerA"])
    assert reply.status == status, reply.body
    if status >= 400:
        error = reply.json()["error"]
        assert error["param"] == param and error["type"] == "invalid_request_error"
        assert set(error) >= {"message", "type", "param", "code"}


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=40)


@settings(max_examples=60, deadline=None)
@given(start=text, end=text, group_by=text, granularity=st.sampled_from(["day", "hour", "x"]))
async def test_made_up_input_never_gets_a_500(world: World, start: str, end: str, group_by: str,
                                              granularity: str) -> None:
    query = "&".join(f"{name}={quote(value)}" for name, value in (
        ("from", start), ("to", end), ("group_by", group_by), ("granularity", granularity)))
    reply = await call(world.app, "GET", f"{V1}/usage?{query}", secret=world.secrets["billing"])
    assert reply.status in (200, 400, 422), reply.body
    if reply.status != 200:
        assert reply.json()["error"]["param"] in ("from", "to", "group_by", "granularity")


async def test_the_openapi_document_describes_the_report(world: World) -> None:
    doc = (await call(world.app, "GET", f"{V1}/openapi.json")).json()
    operation = doc["paths"][f"{V1}/usage"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"from", "to", "group_by", "granularity",
                                                            "team_id", "key_id", "format"}
    assert "text/csv; charset=utf-8" in operation["responses"]["200"]["content"]
    schema = doc["components"]["schemas"]["UsageReportOut"]
    reply = await call(world.app, "GET", f"{V1}/usage?{RANGE}", secret=world.secrets["admin"])
    assert set(reply.json()) == set(schema["properties"])
