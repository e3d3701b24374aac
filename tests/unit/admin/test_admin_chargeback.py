"""``GET /admin/api/v1/chargeback`` against a real store (SQLite, PostgreSQL): GPU cost to the cent.

A known scenario, declared through the admin API like an operator would and used through the
usage ledger and its rollups: deployment ``gpu-dep`` has 2 GPUs at $2.50 per GPU-hour from
2026-12-03T00:00Z, $3.10 from 02:00; its cost model (prefill 1, cached 0.1, decode 4) can do
1,000 units of work an hour. Team A saturates hour 0 (work 1,000), team B uses a third of
hour 1 (work 310), hour 2 is idle. So the three hours cost $5.00 + $5.00 + $6.20 = $16.20:

* showback: A $5.00, B 500 × 310/1000 = $1.55, idle $3.45 + $6.20 = $9.65;
* chargeback: $16.20 by work 1,000 : 310 = 1236.64 and 383.36 cents → $12.37 and $3.83.

Usage of ``plain-dep`` (no GPU cost declared: an external provider) is in no line.
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

START = datetime(2026, 12, 3, tzinfo=UTC)
NOW = datetime(2026, 12, 4, 12, 30, tzinfo=UTC)
PERIOD = "from=2026-12-03T00:00:00Z&to=2026-12-03T03:00:00Z"
GPU_COST = {"gpus": 2, "cost_per_gpu_hour": "2.50", "since": "2026-12-03T00:00:00Z",
            "changes": [{"effective_from": "2026-12-03T02:00:00Z", "gpus": 2,
                         "cost_per_gpu_hour": "3.10"}],
            "cost_model": {"prefill": 1, "cached": "0.1", "decode": 4, "capacity_per_hour": 1000}}
#: (role whose key made the request, deployment, minutes after START, prompt, completion, cached)
USED = [("memberA", "gpu-dep", 5, 100, 100, 0), ("ownerA", "gpu-dep", 50, 100, 100, 0),  # 1000
        ("ownerB", "gpu-dep", 70, 300, 25, 100),  # 200 + 10 + 100 = 310
        ("ownerB", "plain-dep", 75, 5000, 5000, 0)]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[World]:
    pg: Postgres | None = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('admin-chargeback') / 'store.db'}"
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
        admin = world.secrets["admin"]
        for name, cost in (("gpu-dep", GPU_COST), ("plain-dep", None)):
            body = {"name": name, "engine": "openai", "served_model": "m",
                    "replicas": [{"url": "http://127.0.0.1:9/v1"}], "gpu_cost": cost}
            reply = await call(world.app, "POST", f"{V1}/deployments", body, secret=admin)
            assert reply.status == 201, reply.body
        team = {"memberA": "A", "ownerA": "A", "ownerB": "B"}
        records = [UsageRecord(f"r{i}", (START + timedelta(minutes=minutes)).timestamp(),
                               world.ids[f"{role}_key"], world.ids[team[role]], "p", "user",
                               "m", deployment, None, "chat", "interactive", False, prompt,
                               completion, True, 0, 200, None, 1.0, None, cached_tokens=cached)
                   for i, (role, deployment, minutes, prompt, completion, cached) in enumerate(USED)]
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


async def report(world: World, query: str, role: str = "billing") -> dict:
    reply = await call(world.app, "GET", f"{V1}/chargeback?{query}", secret=world.secrets[role])
    assert reply.status == 200, reply.body
    return reply.json()


def parts(doc: dict, world: World) -> dict[str, int]:
    names = {world.ids["A"]: "A", world.ids["B"]: "B", None: "idle"}
    return {names[line["team_id"]]: line["cost_cents"] for line in doc["data"]}


async def test_showback_of_the_known_scenario_reconciles_to_the_cent(world: World) -> None:
    doc = await report(world, PERIOD)
    assert doc["object"] == "chargeback.report" and doc["view"] == "showback"
    assert parts(doc, world) == {"A": 500, "B": 155, "idle": 965}
    assert doc["totals"] == {"cost": "16.20", "cost_cents": 1620, "idle_cost_cents": 965}
    [total] = doc["deployments"]
    assert total["deployment"] == "gpu-dep" and total["cost_cents"] == 1620
    assert (total["teams_cost_cents"], total["idle_cost_cents"]) == (655, 965)
    assert (total["costed_hours"], total["work"], total["capacity"]) == (3, 1310, 3000)
    a, b = (next(line for line in doc["data"] if line["team_id"] == world.ids[t]) for t in "AB")
    assert (a["requests"], a["prompt_tokens"], a["completion_tokens"], a["work"]) == (2, 200, 200, 1000)
    assert (b["cached_tokens"], b["work"], b["cost"], b["share_percent"]) == (100, 310, "1.55", 9.57)


async def test_chargeback_spreads_the_idle_hours_over_the_teams_to_the_cent(world: World) -> None:
    doc = await report(world, PERIOD + "&view=chargeback")
    assert parts(doc, world) == {"A": 1237, "B": 383}
    assert doc["totals"]["cost_cents"] == 1620 and doc["totals"]["idle_cost_cents"] == 0


async def test_hourly_buckets_show_the_idle_hour_and_the_new_price(world: World) -> None:
    doc = await report(world, PERIOD + "&granularity=hour")
    by_hour: dict[str, dict[str, int]] = {}
    names = {world.ids["A"]: "A", world.ids["B"]: "B", None: "idle"}
    for line in doc["data"]:
        by_hour.setdefault(line["start"][11:13], {})[names[line["team_id"]]] = line["cost_cents"]
    assert by_hour == {"00": {"A": 500}, "01": {"B": 155, "idle": 345}, "02": {"idle": 620}}


async def test_hours_before_since_cost_nothing(world: World) -> None:
    doc = await report(world, "from=2026-12-02&to=2026-12-04&granularity=day")
    costs = {t["start"][:10]: t["cost_cents"] for t in doc["deployments"]}
    assert costs == {"2026-12-02": 0, "2026-12-03": 2 * 500 + 22 * 620}


async def test_daily_buckets_share_the_day_by_team_with_each_teams_tokens(world: World) -> None:
    """By day, a team's work comes from the day rollups per team (not the hour rows): the same
    shares and tokens as hour by hour, the rest of the day idle."""
    doc = await report(world, "from=2026-12-03&to=2026-12-04&granularity=day")
    assert parts(doc, world) == {"A": 500, "B": 155, "idle": 2 * 500 + 22 * 620 - 655}
    a, b = (next(line for line in doc["data"] if line["team_id"] == world.ids[t]) for t in "AB")
    assert (a["requests"], a["prompt_tokens"], a["completion_tokens"], a["work"]) == (2, 200, 200, 1000)
    assert (b["requests"], b["prompt_tokens"], b["cached_tokens"], b["work"]) == (1, 300, 100, 310)


async def test_each_role_sees_its_own_teams_lines_only(world: World) -> None:
    ids = world.ids
    owner = await report(world, PERIOD, "ownerA")
    assert [line["team_id"] for line in owner["data"]] == [ids["A"]]
    assert owner["deployments"] == [] and owner["totals"]["idle_cost_cents"] == 0
    assert (await report(world, PERIOD, "memberA"))["data"] == []  # a share is the whole team's
    assert parts(await report(world, PERIOD, "auditor"), world) == {"A": 500, "B": 155, "idle": 965}
    admin = await report(world, PERIOD + f"&team_id={ids['B']}", "admin")
    assert [line["team_id"] for line in admin["data"]] == [ids["B"]]
    reply = await call(world.app, "GET", f"{V1}/chargeback?team_id={ids['B']}",
                       secret=world.secrets["ownerA"])
    assert reply.status == 404 and reply.json()["error"]["code"] == "not_found"


async def test_the_csv_says_what_the_json_says(world: World) -> None:
    doc = await report(world, PERIOD + "&view=chargeback")
    for path in (f"{V1}/chargeback.csv?{PERIOD}&view=chargeback",
                 f"{V1}/chargeback?{PERIOD}&view=chargeback&format=csv"):
        reply = await call(world.app, "GET", path, secret=world.secrets["admin"])
        assert reply.status == 200 and reply.headers["content-type"] == "text/csv; charset=utf-8"
        assert reply.headers["content-disposition"] == (
            'attachment; filename="chargeback-chargeback-period-20261203T0000Z-20261203T0300Z.csv"')
        table = list(csv.DictReader(io.StringIO(reply.body.decode())))
        assert [(row["team_id"], int(row["cost_cents"]), row["cost"]) for row in table] == [
            (line["team_id"] or "", line["cost_cents"], line["cost"]) for line in doc["data"]]


async def test_by_hour_the_json_comes_in_pages_that_join_to_the_whole_report(world: World) -> None:
    whole = await report(world, PERIOD + "&granularity=hour&limit=3")
    assert whole["next_after"] is None
    pages, after = [], None
    while True:
        page = await report(world, PERIOD + "&granularity=hour&limit=1"
                            + ("" if after is None else f"&after={quote(after)}"))
        assert (page["from"], page["to"]) == (whole["from"], whole["to"])  # the asked range
        pages.append(page)
        after = page["next_after"]
        if after is None:
            break
    assert [p["next_after"] for p in pages] == ["2026-12-03T01:00:00+00:00",
                                                "2026-12-03T02:00:00+00:00", None]
    assert [line for p in pages for line in p["data"]] == whole["data"]
    assert [total for p in pages for total in p["deployments"]] == whole["deployments"]
    assert [p["totals"]["cost_cents"] for p in pages] == [500, 500, 620]
    default = await report(world, "from=2026-12-01&to=2026-12-04&granularity=hour")
    assert default["next_after"] == "2026-12-02T00:00:00+00:00"  # 24 hours a page
    assert {line["start"][:10] for line in default["data"]} == {"2026-12-01"}
    assert (await report(world, PERIOD))["next_after"] is None  # by period: whole


@pytest.mark.parametrize(("query", "param", "status"), [
    ("granularity=hour&after=2026-12-03T00:30:00Z", "after", 400),  # not on an hour
    ("granularity=hour&after=2026-12-03T00:00:00Z", "after", 400),  # the first page has none
    ("granularity=hour&after=2026-12-03T03:00:00Z", "after", 400),  # past the end
    ("granularity=hour&after=soon", "after", 400),
    ("granularity=hour&limit=0", "limit", 422),
    ("granularity=hour&limit=169", "limit", 422),
    ("granularity=day&limit=5", "limit", 400),  # only by hour in pages
    ("after=2026-12-03T01:00:00Z", "after", 400),
    ("granularity=hour&format=csv&after=2026-12-03T01:00:00Z", "after", 400),  # CSV is whole
])
async def test_a_page_that_is_not_one_is_refused_naming_the_parameter(
        world: World, query: str, param: str, status: int) -> None:
    reply = await call(world.app, "GET", f"{V1}/chargeback?{PERIOD}&{query}",
                       secret=world.secrets["billing"])
    assert reply.status == status, reply.body
    assert param in str(reply.json()["error"]["param"])


@pytest.mark.parametrize(("query", "param"), [
    ("from=yesterday", "from"),
    ("from=2026-12-05&to=2026-12-01", "to"),
    ("from=2026-01-01&to=2026-12-01", "from"),  # more than a quarter
    ("from=2026-11-01&to=2026-12-05&granularity=hour", "from"),
    ("granularity=week", "granularity"),
    ("view=invoice", "view"),
    ("deployment=plain-dep", "deployment"),  # declares no GPU cost
    ("deployment=nope", "deployment"),
])
@pytest.mark.parametrize("path", ["/chargeback", "/chargeback.csv"])
async def test_bad_input_is_a_400_naming_the_parameter(world: World, path: str, query: str,
                                                     param: str) -> None:
    reply = await call(world.app, "GET", f"{V1}{path}?{query}", secret=world.secrets["billing"])
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=40)


@settings(max_examples=40, deadline=None)
@given(start=text, end=text, granularity=text, view=text, after=text)
async def test_made_up_input_never_gets_a_500(world: World, start: str, end: str,
                                              granularity: str, view: str, after: str) -> None:
    query = "&".join(f"{name}={quote(value)}" for name, value in (
        ("from", start), ("to", end), ("granularity", granularity), ("view", view),
        ("after", after)))
    reply = await call(world.app, "GET", f"{V1}/chargeback?{query}", secret=world.secrets["billing"])
    assert reply.status in (200, 400), reply.body
    if reply.status != 200:
        assert reply.json()["error"]["param"] in ("from", "to", "granularity", "view", "after")


@pytest.mark.parametrize(("cost", "field"), [
    ({"gpus": 2, "cost_per_gpu_hour": "-1"}, "cost_per_gpu_hour"),
    ({"gpus": 2, "cost_per_gpu_hour": "two"}, "cost_per_gpu_hour"),
    ({"gpus": -1, "cost_per_gpu_hour": "1"}, "gpus"),
    ({"gpus": 1, "cost_per_gpu_hour": "1", "since": "yesterday"}, "since"),
    ({"gpus": 1, "cost_per_gpu_hour": "1", "changes": [
        {"effective_from": "03/12/2026", "gpus": 1, "cost_per_gpu_hour": "1"}]}, "effective_from"),
    ({"gpus": 1, "cost_per_gpu_hour": "1", "cost_model": {"decode": -4}}, "decode"),
])
async def test_a_bad_gpu_cost_is_refused_naming_the_field_and_nothing_is_written(
        world: World, cost: dict, field: str) -> None:
    admin = world.secrets["admin"]
    name = world.unique("bad-gpu")
    body = {"name": name, "engine": "openai", "served_model": "m",
            "replicas": [{"url": "http://127.0.0.1:9/v1"}], "gpu_cost": cost}
    reply = await call(world.app, "POST", f"{V1}/deployments", body, secret=admin)
    assert reply.status in (400, 422), reply.body
    assert field in reply.json()["error"]["message"] + str(reply.json()["error"]["param"])
    listed = await call(world.app, "GET", f"{V1}/deployments?name={name}", secret=admin)
    assert listed.json()["data"] == []


async def test_a_gpu_cost_change_is_audited_and_read_back_as_written(world: World) -> None:
    admin = world.secrets["admin"]
    body = {"name": world.unique("gpu"), "engine": "openai", "served_model": "m",
            "replicas": [{"url": "http://127.0.0.1:9/v1"}], "gpu_cost": GPU_COST}
    created = (await call(world.app, "POST", f"{V1}/deployments", body, secret=admin)).json()
    assert created["gpu_cost"]["cost_per_gpu_hour"] == "2.50"
    assert created["gpu_cost"]["changes"][0]["effective_from"] == "2026-12-03T02:00:00Z"
    reply = await call(world.app, "PATCH", f"{V1}/deployments/{created['id']}",
                       {"gpu_cost": {**GPU_COST, "gpus": 4}}, secret=admin)
    assert reply.status == 200 and reply.json()["gpu_cost"]["gpus"] == 4, reply.body
    read = (await call(world.app, "GET", f"{V1}/deployments/{created['id']}", secret=admin)).json()
    assert read["gpu_cost"] == reply.json()["gpu_cost"]
    audit = (await call(world.app, "GET", f"{V1}/audit?target_id={created['id']}",
                        secret=admin)).json()["data"]
    changes = {entry["action"]: entry for entry in audit}
    assert changes["deployment.create"]["after"]["gpu_cost"]["gpus"] == 2
    assert changes["deployment.update"]["before"]["gpu_cost"]["gpus"] == 2
    assert changes["deployment.update"]["after"]["gpu_cost"]["gpus"] == 4


async def test_the_openapi_document_describes_the_report(world: World) -> None:
    doc = (await call(world.app, "GET", f"{V1}/openapi.json")).json()
    operation = doc["paths"][f"{V1}/chargeback"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"from", "to", "granularity", "view",
                                                            "deployment", "team_id", "format"}
    schema = doc["components"]["schemas"]["ChargebackReportOut"]
    got = await report(world, PERIOD, "admin")
    assert set(got) == set(schema["properties"])
    line = doc["components"]["schemas"]["ChargebackLineOut"]
    assert set(got["data"][0]) == set(line["properties"])
    total = doc["components"]["schemas"]["ChargebackDeploymentOut"]
    assert set(got["deployments"][0]) == set(total["properties"])
