"""``POST /admin/api/v1/apply`` beyond the RBAC matrix: the platform file in (YAML or JSON),
the plan out; a dry run writes nothing; applying twice changes nothing the second time; an
invalid file is a 422 naming the line; a store refusal is a 409 with nothing applied; an
oversize body is a 413; every change is audited with the caller as the actor.

Reuses the seeded world of ``test_admin_api`` (its own copy per backend, for this module).
Each test starts with no file-managed rows (``_no_managed_rows``), so plans are exact.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
from tests.unit.admin.test_admin_api import CLIENT, V1, Reply, World, call, world

from inferenceops.admin.api.routes_apply import MAX_BODY_BYTES
from inferenceops.config.apply import MANAGED_BY
from inferenceops.store import repo

pytestmark = pytest.mark.asyncio(loop_scope="module")
__all__ = ["world"]  # the module-scoped fixture, imported so this module gets its own world

APPLY = f"{V1}/apply"
FILE = """\
providers:
  - {{name: up-{n}, base_url: "https://api.example/v1"}}
deployments:
  - {{name: gpt-{n}, engine: openai, provider: up-{n}, served_model: gpt-4o-mini}}
  - {{name: sim-{n}, engine: simulator, profile: test-fast, served_model: sim, replicas: 2}}
models:
  - {{name: small-{n}, deployment: gpt-{n}, aliases: [small-{n}-latest]}}
  - {{name: demo-{n}, deployment: sim-{n}}}
"""
CREATED = ["+ provider up-{n}", "+ deployment gpt-{n}", "+ deployment sim-{n}",
           "+ model small-{n}", "+ model demo-{n}"]


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def _no_managed_rows(world: World) -> None:
    """Delete what earlier tests' files left, so each test's plan is exactly its own file's."""
    async with world.db.transaction() as tx:
        data = await repo.load_catalog(tx)
        for rows, delete in ((data.models, repo.delete_model),
                             (data.deployments, repo.delete_deployment),
                             (data.providers, repo.delete_provider)):
            for row in rows:
                if row.managed_by == MANAGED_BY:
                    await delete(tx, row.id)


def _lines(reply: Reply) -> list[str]:
    marks = {"create": "+", "update": "~", "delete": "-"}
    return [f"{marks[c['action']]} {c['kind']} {c['name']}" for c in reply.json()["changes"]]


async def _yaml(w: World, text: str, *, query: str = "", role: str = "admin",
                content_type: str = "application/yaml") -> Reply:
    return await call(w.app, "POST", APPLY + query, raw=text.encode(),
                      headers={"content-type": content_type}, secret=w.secrets.get(role))


async def _state(w: World) -> tuple[int, list[tuple[str, str, str | None]]]:
    """(revision, every catalog row as (kind, name, managed_by)): proves nothing was written."""
    async with w.db.read() as tx:
        data = await repo.load_catalog(tx)
        rows = [(kind, r.name, r.managed_by) for kind, records in (
            ("provider", data.providers), ("deployment", data.deployments),
            ("model", data.models)) for r in records]
        return await repo.revision(tx), sorted(rows)


async def test_a_dry_run_shows_the_plan_and_writes_nothing(world: World) -> None:
    n = world.unique("dry")
    before, tail = await _state(world), await world.audit_tail()
    reply = await _yaml(world, FILE.format(n=n), query="?dry_run=true")
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["dry_run"] is True and _lines(reply) == [line.format(n=n) for line in CREATED]
    assert body["changes"][0] == {"action": "create", "kind": "provider", "name": f"up-{n}",
                                  "fields": [], "adopt": False}
    assert body["summary"].startswith("would change 5 object(s):")
    assert f"+ model demo-{n}" in body["summary"]
    assert await _state(world) == before and await world.audit_since(tail) == []


async def test_apply_then_apply_again_changes_nothing(world: World) -> None:
    n = world.unique("twice")
    text = FILE.format(n=n)
    first = await _yaml(world, text)
    assert first.status == 200, first.body
    assert first.json()["dry_run"] is False and first.json()["summary"].startswith("changed 5")
    revision, rows = await _state(world)
    assert ("model", f"demo-{n}", MANAGED_BY) in rows and ("provider", f"up-{n}", MANAGED_BY) in rows
    for content_type in ("text/yaml", "text/plain; charset=utf-8", "application/x-yaml"):
        again = await _yaml(world, text, content_type=content_type)
        assert again.status == 200, again.body
        assert again.json() == {"dry_run": False, "changes": [],
                                "summary": "the store already matches the file; nothing to change"}
    assert await _state(world) == (revision, rows)

    changed = text.replace("replicas: 2}", "replicas: 3}").replace(f"  - {{name: small-{n}, "
                                                                   f"deployment: gpt-{n}, aliases: "
                                                                   f"[small-{n}-latest]}}\n", "")
    reply = await call(world.app, "POST", APPLY, {"file": changed, "source": "p.yaml"},
                       secret=world.secrets["admin"])
    assert reply.status == 200, reply.body
    assert reply.json()["changes"] == [
        {"action": "update", "kind": "deployment", "name": f"sim-{n}", "fields": ["replicas"],
         "adopt": False},
        {"action": "delete", "kind": "model", "name": f"small-{n}", "fields": [], "adopt": False}]


async def test_every_change_is_audited_with_the_caller(world: World) -> None:
    n = world.unique("audit")
    tail = await world.audit_tail()
    reply = await call(world.app, "POST", APPLY, {"file": FILE.format(n=n)},
                       secret=world.secrets["admin"])
    assert reply.status == 200, reply.body
    entries = await world.audit_since(tail)
    assert [e.action for e in entries] == ["provider.create", "deployment.create",
                                           "deployment.create", "model.create", "model.create"]
    assert {(e.actor, e.source) for e in entries} == {(world.actors["admin"], CLIENT)}
    assert entries[-1].after["name"] == f"demo-{n}" and entries[-1].before is None


async def test_admin_api_rows_are_adopted_by_name_or_left_alone(world: World) -> None:
    n = world.unique("adopt")
    async with world.db.transaction() as tx:
        await repo.create_deployment(tx, {"name": f"sim-{n}", "engine": "simulator",
                                          "profile": "test-fast", "served_model": "old"})
    mine = await world.fresh_model(granted_to=None)
    reply = await _yaml(world, FILE.format(n=n))
    assert reply.status == 200, reply.body
    adopted = [c for c in reply.json()["changes"] if c["adopt"]]
    assert adopted == [{"action": "update", "kind": "deployment", "name": f"sim-{n}",
                        "fields": ["replicas", "served_model"], "adopt": True}]
    assert "[adopted from the admin API]" in reply.json()["summary"]
    async with world.db.read() as tx:
        assert (await repo.get_model(tx, mine)).managed_by is None  # not named: left alone


@pytest.mark.parametrize(("text", "line", "says"), [
    ("deployments:\n  - name: a\n    engine: simulator\n   profile: x\n", 4, "not valid YAML"),
    ("deployments:\n  - {name: d, engine: simulator, profile: test-fast, served_model: m}\n"
     "models:\n  - name: m\n    deployment: nope\n", 5, "models[0].deployment"),
    ("deployments:\n  - {name: d, engine: simulator, served_model: m}\n"
     "models:\n  - {name: m, deployment: d}\n", 2, "needs 'profile:'"),
    ("- just\n- a list\n", 1, "must be a mapping"),
    ("", 1, "must be a mapping"),
])
async def test_an_invalid_file_is_422_naming_the_line(world: World, text: str, line: int,
                                                      says: str) -> None:
    before, tail = await _state(world), await world.audit_tail()
    for reply, source in (
            (await _yaml(world, text), "request body"),
            (await call(world.app, "POST", APPLY, {"file": text, "source": "ops/platform.yaml"},
                        secret=world.secrets["admin"]), "ops/platform.yaml")):
        assert reply.status == 422, reply.body
        error = reply.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] is None
        assert error["message"].startswith(f"{source}: ")
        assert f"line {line}" in error["message"] and says in error["message"], error["message"]
    assert await _state(world) == before and await world.audit_since(tail) == []


async def test_environment_variables_are_checked_in_the_server(world: World,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    text = FILE.format(n=world.unique("env")).replace(
        'base_url: "https://api.example/v1"}', 'base_url: "https://api.example/v1", '
        "api_key_env: IO_TEST_APPLY_KEY}")
    monkeypatch.delenv("IO_TEST_APPLY_KEY", raising=False)
    reply = await _yaml(world, text)
    assert reply.status == 422
    assert "line 2: providers[0].api_key_env" in reply.json()["error"]["message"]
    monkeypatch.setenv("IO_TEST_APPLY_KEY", "sk-from-the-environment")
    assert (await _yaml(world, text)).status == 200


async def test_a_store_refusal_is_409_and_nothing_is_applied(world: World) -> None:
    n = world.unique("pinned")
    assert (await _yaml(world, FILE.format(n=n))).status == 200
    async with world.db.transaction() as tx:  # an admin-API model on the file's deployment
        pinned = await repo.create_model(tx, {"name": f"pinned-{n}", "deployment": f"gpt-{n}"})
    without_gpt = (FILE.format(n=n)
                   .replace(f"  - {{name: gpt-{n}, engine: openai, provider: up-{n}, "
                            "served_model: gpt-4o-mini}\n", "")
                   .replace(f"  - {{name: small-{n}, deployment: gpt-{n}, aliases: "
                            f"[small-{n}-latest]}}\n", "")
                   .replace("models:\n", f"models:\n  - {{name: extra-{n}, deployment: sim-{n}}}\n"))
    before, tail = await _state(world), await world.audit_tail()
    try:
        dry = await _yaml(world, without_gpt, query="?dry_run=true")  # a plan is not a check
        assert dry.status == 200 and f"- deployment gpt-{n}" in _lines(dry)
        reply = await _yaml(world, without_gpt)
        assert reply.status == 409, reply.body
        error = reply.json()["error"]
        assert error["code"] == "conflict" and f"pinned-{n}" in error["message"], error
        assert await _state(world) == before and await world.audit_since(tail) == []
    finally:
        async with world.db.transaction() as tx:
            await repo.delete_model(tx, pinned.id)


async def test_a_body_over_the_bound_is_413(world: World) -> None:
    padding = "#" * MAX_BODY_BYTES + "\n"
    before = await _state(world)
    reply = await _yaml(world, padding + FILE.format(n=world.unique("big")))
    assert reply.status == 413 and reply.json()["error"]["code"] == "payload_too_large"
    json_reply = await call(world.app, "POST", APPLY, {"file": padding},
                            secret=world.secrets["admin"])
    assert json_reply.status == 413
    # Authorization comes before the body is read: the body is nobody else's business.
    assert (await _yaml(world, padding, role="auditor")).status == 403
    assert (await _yaml(world, padding, role="anon")).status == 401
    assert await _state(world) == before


@pytest.mark.parametrize(("headers", "raw", "status", "code", "param"), [
    ({"content-type": "application/x-www-form-urlencoded"}, b"deployments: []", 415,
     "unsupported_media_type", None),
    ({"content-type": ""}, b"deployments: []", 415, "unsupported_media_type", None),
    ({"content-type": "application/json"}, b"{nope", 422, "invalid_json", None),
    ({"content-type": "application/json"}, b'{"source": "x.yaml"}', 422, "invalid_value", "file"),
    ({"content-type": "application/json"}, b'{"file": "a: 1", "colour": "red"}', 422,
     "invalid_value", "colour"),
    ({"content-type": "application/json"}, b'{"file": "a: 1", "source": "a\\nb"}', 422,
     "invalid_value", "source"),
    ({"content-type": "application/yaml"}, b"models: \xff\xfe", 422, "invalid_value", None),
])
async def test_bodies_that_are_not_a_platform_file(world: World, headers: dict[str, str], raw: bytes,
                                                   status: int, code: str, param: str | None) -> None:
    reply = await call(world.app, "POST", APPLY, raw=raw, headers=headers,
                       secret=world.secrets["admin"])
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error


async def test_a_currency_other_than_the_platforms_is_refused(world: World) -> None:
    text = "currency: EUR\n" + FILE.format(n=world.unique("eur"))
    reply = await _yaml(world, text)
    assert reply.status == 422
    assert "EUR" in reply.json()["error"]["message"] and "USD" in reply.json()["error"]["message"]
    assert (await _yaml(world, "currency: USD\n" + FILE.format(n=world.unique("usd")))).status == 200


async def test_openapi_documents_the_body_types(world: World) -> None:
    doc: dict[str, Any] = (await call(world.app, "GET", f"{V1}/openapi.json")).json()
    operation = doc["paths"][APPLY]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/yaml", "text/yaml", "text/plain", "application/json"}
    assert [p["name"] for p in operation["parameters"]] == ["dry_run"]
