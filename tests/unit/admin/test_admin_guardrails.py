"""Guardrail policies through the admin API against a real store (SQLite, PostgreSQL), and the
auditors' query of usage records by guardrail outcome.

The world of ``test_admin_api`` (teams A and B, a person per role), served by an app that
also knows a platform file's ``guardrails:`` section. Proves: bad rules and attachments are
422 naming the field (an invalid or exponential regex, an unknown entity type, an unknown
team, model or key); the file's policies are listed and read-only; a change adds one to the
version and is audited with before and after, the same content again is neither; an
attached policy is not deleted; records are found by outcome within each role's reach,
and no answer carries text of a prompt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import pytest_asyncio
from tests.support.postgres import Postgres, probe
from tests.unit.admin.test_admin_api import CIPHER, HASHER, V1, World, call, seed

from inferenceops.admin.api import build_admin_app
from inferenceops.guardrails.spec import GuardrailsSpec
from inferenceops.outbox.records import UsageRecord
from inferenceops.store import Database, repo
from inferenceops.store.migrate import upgrade
from inferenceops.store.repo.audit import list_audit
from inferenceops.store.repo.usage import insert_usage

pytestmark = pytest.mark.asyncio(loop_scope="module")

FILE = GuardrailsSpec.model_validate({
    "policies": [{"name": "pii", "version": 3, "rules": [
        {"entities": ["email"], "action": "redact"}]}],
    "attach": [{"policy": "pii", "team": "team-A"}, {"policy": "pii", "model": "m"}]})
CARDS = [{"entities": ["card"], "action": "block", "applies_to": ["input"]}]
NOW = datetime.now(UTC)
#: (role whose key made the request, guardrails outcome or None, minutes ago)
USED = [("memberA", "pii@3 email:redact", 5), ("memberA", "cards@1,pii@3 card:block", 4),
        ("ownerA", "cards@2 card:block custom:flag×2", 3), ("ownerB", "cards@1 iban:block", 2),
        ("admin", None, 1)]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[World]:
    pg: Postgres | None = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('admin-guard') / 'store.db'}"
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
        world.app = build_admin_app(db, HASHER, cipher=CIPHER, guardrails_file=FILE)
        async with db.transaction() as tx:
            deployment = await repo.create_deployment(tx, {
                "name": "dep", "engine": "simulator", "served_model": "m", "profile": "test-fast"})
            await repo.create_model(tx, {"name": "chat", "deployment": deployment.name})
            await insert_usage(tx, [UsageRecord(
                f"req-{i}", (NOW - timedelta(minutes=ago)).timestamp(), world.ids[f"{role}_key"],
                {"memberA": world.ids["A"], "ownerA": world.ids["A"],
                 "ownerB": world.ids["B"]}.get(role), world.ids[role], "user", "chat", "dep",
                None, "chat", "interactive", False, 10, 0, True, 0,
                400 if outcome and "block" in outcome else 200,
                "content_policy_violation" if outcome and "block" in outcome else None,
                1.0, None, guardrails=outcome) for i, (role, outcome, ago) in enumerate(USED)])
        yield world
    finally:
        await db.close()
        if pg is not None:
            for name in list(pg.created):
                await pg.drop(name)


async def admin(world: World, method: str, path: str, body: Any = None,
                role: str = "admin") -> Any:
    reply = await call(world.app, method, V1 + path, body, secret=world.secrets[role])
    return reply.status, reply.json()


@pytest.mark.parametrize(("rule", "param"), [
    ({"regex": "([a-z", "action": "block"}, "rules.0.regex"),
    ({"regex": "(a+)+$", "action": "block"}, "rules.0.regex"),
    ({"regex": "(x|x)*y", "action": "redact"}, "rules.0.regex"),
    ({"regex": "a{99999999999}", "action": "flag"}, "rules.0.regex"),
    ({"entities": ["passport"], "action": "block"}, "rules.0.entities.0"),
    ({"entities": ["card"], "action": "shred"}, "rules.0.action"),
    ({"max_input_tokens": 0, "action": "block"}, "rules.0.max_input_tokens"),
    ({"keywords": ["x"], "regex": "y", "action": "flag"}, "rules.0"),
])
async def test_a_bad_rule_is_422_naming_the_field(world: World, rule: dict[str, Any],
                                                  param: str) -> None:
    status, body = await admin(world, "POST", "/guardrails/policies",
                               {"name": world.unique("bad"), "rules": [rule]})
    assert status == 422, body
    assert body["error"]["param"] == param and body["error"]["code"] == "invalid_value"
    assert body["error"]["type"] == "invalid_request_error"


async def test_an_attachment_names_what_exists(world: World) -> None:
    name = world.unique("cards")
    assert (await admin(world, "POST", "/guardrails/policies",
                        {"name": name, "rules": CARDS}))[0] == 201
    for body, param in [({"scope": "team", "team_id": "team_nope"}, "team_id"),
                        ({"scope": "key", "key_id": "key_nope"}, "key_id"),
                        ({"scope": "model", "model": "no-such-model"}, "model"),
                        ({"scope": "global", "model": "chat"}, "model"),
                        ({"scope": "galaxy"}, "scope")]:
        status, reply = await admin(world, "POST", "/guardrails/attachments",
                                    {"policy": name, **body})
        assert status == 422 and reply["error"]["param"] == param, (body, reply)
    status, reply = await admin(world, "POST", "/guardrails/attachments",
                                {"policy": "nothing", "scope": "global"})
    assert status == 422 and reply["error"]["param"] == "policy"
    made = await admin(world, "POST", "/guardrails/attachments",
                       {"policy": name, "scope": "model", "model": "chat"})
    again = await admin(world, "POST", "/guardrails/attachments",
                        {"policy": name, "scope": "model", "model": "chat"})
    assert (made[0], again[0]) == (201, 200) and made[1]["id"] == again[1]["id"]
    status, reply = await admin(world, "DELETE", f"/guardrails/policies/{name}")
    assert status == 409 and "detach" in reply["error"]["message"]
    assert (await admin(world, "DELETE", f"/guardrails/attachments/{made[1]['id']}"))[0] == 204
    assert (await admin(world, "DELETE", f"/guardrails/policies/{name}"))[0] == 204
    assert (await admin(world, "GET", f"/guardrails/policies/{name}"))[0] == 404


async def test_the_platform_files_policies_are_listed_and_read_only(world: World) -> None:
    status, page = await admin(world, "GET", "/guardrails/policies?limit=1000", role="auditor")
    assert status == 200
    pii = next(p for p in page["data"] if p["name"] == "pii")
    assert (pii["source"], pii["read_only"], pii["label"], pii["id"]) == ("file", True, "pii@3", None)
    assert pii["rules"] == [{"entities": ["email"], "action": "redact",
                             "applies_to": ["input", "output"]}]
    for method, path, body in [
            ("PUT", "/guardrails/policies/pii", {"rules": CARDS}),
            ("DELETE", "/guardrails/policies/pii", None),
            ("POST", "/guardrails/policies", {"name": "pii", "rules": CARDS})]:
        status, reply = await admin(world, method, path, body)
        assert status == 409 and "platform file" in reply["error"]["message"], (method, reply)
    status, attachments = await admin(world, "GET", "/guardrails/attachments?policy=pii")
    filed = [a for a in attachments["data"] if a["source"] == "file"]
    assert [(a["scope"], a["team_id"], a["team_name"], a["model"]) for a in filed] == [
        ("team", world.ids["A"], "team-A", None), ("model", None, None, "m")]
    # The file's policy may be attached through the API to one more subject.
    status, made = await admin(world, "POST", "/guardrails/attachments",
                               {"policy": "pii", "scope": "team", "team_id": world.ids["B"]})
    assert status == 201 and made["source"] == "api"
    assert (await admin(world, "DELETE", f"/guardrails/attachments/{made['id']}"))[0] == 204


async def _audit(world: World, after: int) -> list[Any]:
    async with world.db.read() as tx:
        return list((await list_audit(tx, after_seq=after, limit=1000)).items)


async def test_each_change_adds_a_version_and_an_audit_entry(world: World) -> None:
    name = world.unique("versioned")
    start = await world.audit_tail()
    made = await admin(world, "PUT", f"/guardrails/policies/{name}", {"rules": CARDS})
    same = await admin(world, "PUT", f"/guardrails/policies/{name}", {"rules": CARDS})
    more = CARDS + [{"regex": "PROJECT-[0-9]{4}", "action": "redact"}]
    changed = await admin(world, "PUT", f"/guardrails/policies/{name}",
                          {"rules": more, "description": "and projects"})
    assert (made[0], same[0], changed[0]) == (201, 200, 200)
    assert (made[1]["version"], same[1]["version"], changed[1]["version"]) == (1, 1, 2)
    assert changed[1]["label"] == f"{name}@2"
    assert (await admin(world, "GET", f"/guardrails/policies/{name}", role="auditor"))[1] == changed[1]
    entries = await _audit(world, start)
    assert [e.action for e in entries] == ["guardrail_policy.create", "guardrail_policy.update"]
    update = entries[1]
    assert update.actor == world.actors["admin"] and update.target_id == name
    assert (update.before["version"], update.after["version"]) == (1, 2)
    assert update.after["rules"][1] == {"regex": "PROJECT-[0-9]{4}", "action": "redact",
                                        "applies_to": ["input", "output"]}
    refused = await admin(world, "PUT", f"/guardrails/policies/{name}", {"rules": CARDS},
                          role="auditor")
    assert refused[0] == 403 and await _audit(world, entries[-1].seq) == []


async def records(world: World, query: str, role: str = "auditor") -> list[str]:
    status, page = await admin(world, "GET", f"/usage/records?{query}", role=role)
    assert status == 200, page
    for record in page["data"]:
        assert not {"messages", "prompt", "content", "body"} & set(record)
    return [r["request_id"] for r in page["data"]]


async def test_auditors_find_records_by_guardrail_outcome(world: World) -> None:
    assert await records(world, "guardrail_action=block&entity=card") == ["req-2", "req-1"]
    assert await records(world, "guardrail_action=block") == ["req-3", "req-2", "req-1"]
    assert await records(world, "entity=custom") == ["req-2"]
    assert await records(world, "guardrail_action=redact") == ["req-0"]
    assert await records(world, "policy=pii") == ["req-1", "req-0"]
    assert await records(world, "policy=cards&entity=iban") == ["req-3"]
    assert await records(world, "guarded=true") == ["req-3", "req-2", "req-1", "req-0"]
    assert len(await records(world, "")) == 5
    # Newest first, page by page.
    status, first = await admin(world, "GET", "/usage/records?guarded=true&limit=3")
    assert [r["request_id"] for r in first["data"]] == ["req-3", "req-2", "req-1"]
    second = await records(world, f"guarded=true&limit=3&after={first['next_after']}")
    assert second == ["req-0"]
    # Within each role's reach: an owner their team, a member their own keys.
    assert await records(world, "guardrail_action=block", role="ownerA") == ["req-2", "req-1"]
    assert await records(world, "guardrail_action=block", role="memberA") == ["req-1"]
    assert await records(world, "guardrail_action=block", role="ownerB") == ["req-3"]
    status, reply = await admin(world, "GET", f"/usage/records?team_id={world.ids['A']}",
                                role="ownerB")
    assert status == 404


@pytest.mark.parametrize(("query", "param"), [
    ("entity=passport", "entity"), ("guardrail_action=shred", "guardrail_action"),
    ("policy=%25", "policy"), ("after=x1", "after"), ("from=yesterday", "from"),
    ("from=2026-12-05&to=2026-12-01", "to"), ("limit=0", "limit"),
])
async def test_bad_record_queries_name_the_parameter(world: World, query: str,
                                                     param: str) -> None:
    status, reply = await admin(world, "GET", f"/usage/records?{query}", role="auditor")
    assert 400 <= status < 500 and reply["error"]["param"] == param, reply


async def test_the_first_week_of_the_calendar_is_an_empty_answer(world: World) -> None:
    """``to`` a day after the calendar starts: the default ``from`` cannot be 7 days before it."""
    assert await records(world, "to=0001-01-02T00:00:00Z") == []


async def test_the_openapi_document_describes_the_rules(world: World) -> None:
    schema = orjson.dumps(world.app.openapi()).decode()
    assert "RuleSpec" in schema and "applies_to" in schema
