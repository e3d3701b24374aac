"""Admin API for admission rules beyond the RBAC matrix: validation, 404s, replace vs create,
deletion, the store revision, amounts and currency, who sees which rule, background-only keys.

Reuses the seeded world of ``test_admin_api`` (its own copy per backend, for this module).
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.admin.test_admin_api import HASHER, V1, World, call, world

from inferenceops.admin.api import build_admin_app
from inferenceops.store import repo

pytestmark = pytest.mark.asyncio(loop_scope="module")
__all__ = ["world"]  # the module-scoped fixture, imported so this module gets its own world


async def _revision(w: World) -> int:
    async with w.db.read() as tx:
        return await repo.revision(tx)


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value.format(**ids) if isinstance(value, str) else value


@pytest.mark.parametrize(("method", "path", "body", "param"), [
    ("POST", "/limits", {"scope": "team", "team_id": "{A}", "rpm": 0}, "rpm"),
    ("POST", "/limits", {"scope": "team", "team_id": "{A}", "tpm": -1}, "tpm"),
    ("POST", "/limits", {"scope": "team", "team_id": "{A}", "concurrency": 2**53}, "concurrency"),
    ("POST", "/limits", {"scope": "team", "team_id": "{A}", "rpm": "many"}, "rpm"),
    ("POST", "/limits", {"scope": "team", "team_id": "{A}"}, "rpm"),  # no limit at all
    ("POST", "/limits", {"scope": "user", "team_id": "{A}", "rpm": 1}, "scope"),
    ("POST", "/limits", {"scope": "key", "team_id": "{A}", "rpm": 1}, "key_id"),
    ("POST", "/limits", {"scope": "team", "team_id": "{A}", "model": "m", "rpm": 1}, "model"),
    ("POST", "/limits", {"scope": "model", "model": "m", "key_id": "{memberA_key}", "rpm": 1}, "key_id"),
    ("POST", "/limits", {"scope": "team_model", "team_id": "{A}", "rpm": 1}, "model"),
    ("POST", "/limits", {"scope": "model", "model": " ", "rpm": 1}, "model"),
    ("POST", "/limits", {"scope": "team", "team_id": "{A}", "rpm": 1, "burst": 3}, "burst"),
    ("POST", "/budgets", {"scope": "team", "team_id": "{A}", "amount": "0", "period": "daily"},
     "amount"),
    ("POST", "/budgets", {"scope": "team", "team_id": "{A}", "amount": "-5", "period": "daily"},
     "amount"),
    ("POST", "/budgets", {"scope": "team", "team_id": "{A}", "amount": "lots", "period": "daily"},
     "amount"),
    ("POST", "/budgets", {"scope": "team", "team_id": "{A}", "amount": "1e20", "period": "daily"},
     "amount"),
    ("POST", "/budgets", {"scope": "team", "team_id": "{A}", "amount": True, "period": "daily"},
     "amount"),
    ("POST", "/budgets", {"scope": "team", "team_id": "{A}", "amount": "5", "currency": "XYZ",
                          "period": "daily"}, "currency"),
    ("POST", "/budgets", {"scope": "team", "team_id": "{A}", "amount": "5", "currency": "EUR",
                          "period": "daily"}, "currency"),  # real, but not the platform's
    ("POST", "/budgets", {"scope": "team", "team_id": "{A}", "amount": "5", "period": "hourly"},
     "period"),
    ("POST", "/budgets", {"scope": "team", "team_id": "{A}", "amount": "5", "period": "daily",
                          "mode": "strict"}, "mode"),
    ("POST", "/budgets", {"scope": "model", "team_id": "{A}", "amount": "5", "period": "daily"},
     "scope"),
    ("POST", "/budgets", {"scope": "team", "key_id": "{memberA_key}", "amount": "5",
                          "period": "daily"}, "team_id"),
    ("POST", "/budgets", {"scope": "key", "key_id": "{memberA_key}", "team_id": "{A}",
                          "amount": "5", "period": "daily"}, "team_id"),
    ("PATCH", "/teams/{A}", {"weight": 0}, "weight"),
    ("PATCH", "/teams/{A}", {"weight": 1001}, "weight"),
    ("PATCH", "/teams/{A}", {"weight": None}, "weight"),
    ("POST", "/keys", {"name": "k", "team_id": "{A}", "scopes": ["inference"],
                       "background_only": "sometimes"}, "background_only"),
    ("GET", "/limits?scope=user", None, "scope"),
    ("GET", "/budgets?period=hourly", None, "period"),
])
async def test_validation_errors_name_the_field(world: World, method: str, path: str, body: Any,
                                                param: str) -> None:
    tail, revision = await world.audit_tail(), await _revision(world)
    reply = await call(world.app, method, V1 + path.format(**world.ids), _fill(body, world.ids),
                       secret=world.secrets["admin"])
    assert reply.status == 422, reply.body
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error
    assert await world.audit_since(tail) == [] and await _revision(world) == revision


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/limits/lim_nope", None),
    ("DELETE", "/limits/lim_nope", None),
    ("GET", "/budgets/bgt_nope", None),
    ("DELETE", "/budgets/bgt_nope", None),
    ("GET", "/limits?team_id=team_nope", None),
    ("GET", "/budgets?team_id=team_nope", None),
    ("POST", "/limits", {"scope": "team", "team_id": "team_nope", "rpm": 1}),
    ("POST", "/limits", {"scope": "key", "key_id": "key_nope", "rpm": 1}),
    ("POST", "/limits", {"scope": "team_model", "team_id": "team_nope", "model": "m", "rpm": 1}),
    ("POST", "/budgets", {"scope": "team", "team_id": "team_nope", "amount": "1", "period": "daily"}),
    ("POST", "/budgets", {"scope": "key", "key_id": "key_nope", "amount": "1", "period": "daily"}),
    ("PATCH", "/teams/team_nope", {"weight": 2}),
])
async def test_unknown_ids_are_404(world: World, method: str, path: str, body: Any) -> None:
    tail = await world.audit_tail()
    reply = await call(world.app, method, V1 + path, body, secret=world.secrets["admin"])
    assert reply.status == 404, reply.body
    assert reply.json()["error"]["code"] == "not_found"
    assert await world.audit_since(tail) == []


async def test_set_limit_creates_then_replaces_and_bumps_the_revision(world: World) -> None:
    admin = world.secrets["admin"]
    body = {"scope": "team_model", "team_id": world.ids["B"], "model": "org/model-x", "rpm": 60,
            "tpm": 6000}
    start, tail = await _revision(world), await world.audit_tail()
    created = await call(world.app, "POST", f"{V1}/limits", body, secret=admin)
    assert created.status == 201, created.body
    first = created.json()
    assert first["id"].startswith("lim_") and (first["rpm"], first["tpm"], first["concurrency"]) == (
        60, 6000, None)
    assert await _revision(world) == start + 1
    replaced = await call(world.app, "POST", f"{V1}/limits",
                          {**body, "rpm": None, "tpm": None, "concurrency": 4}, secret=admin)
    assert replaced.status == 200, replaced.body
    second = replaced.json()
    assert second["id"] == first["id"] and (second["rpm"], second["tpm"], second["concurrency"]) == (
        None, None, 4)
    assert await _revision(world) == start + 2
    got = await call(world.app, "GET", f"{V1}/limits/{first['id']}", secret=admin)
    assert got.json() == second
    entries = await world.audit_since(tail)
    assert [e.action for e in entries] == ["limit.set", "limit.set"]
    assert entries[0].before is None and entries[0].after["rpm"] == 60
    assert entries[1].before["rpm"] == 60 and entries[1].after["concurrency"] == 4
    assert {e.target_type for e in entries} == {"limit"} and {e.target_id for e in entries} == {
        first["id"]}


async def test_delete_limit_and_budget(world: World) -> None:
    admin = world.secrets["admin"]
    for kind, rule_id in (("limits", await world.fresh_limit()),
                          ("budgets", await world.fresh_budget("memberA"))):
        start, tail = await _revision(world), await world.audit_tail()
        assert (await call(world.app, "DELETE", f"{V1}/{kind}/{rule_id}", secret=admin)).status == 204
        assert await _revision(world) == start + 1
        (entry,) = await world.audit_since(tail)
        assert entry.action == f"{kind[:-1]}.delete" and entry.before["id"] == rule_id
        assert entry.after is None
        assert (await call(world.app, "GET", f"{V1}/{kind}/{rule_id}", secret=admin)).status == 404
        assert (await call(world.app, "DELETE", f"{V1}/{kind}/{rule_id}", secret=admin)).status == 404


async def test_budget_amounts_and_currency(world: World) -> None:
    admin = world.secrets["admin"]
    key_id, _ = await world.fresh_key()
    body = {"scope": "key", "key_id": key_id, "amount": "12.50", "period": "weekly"}
    start = await _revision(world)
    created = await call(world.app, "POST", f"{V1}/budgets", body, secret=admin)
    assert created.status == 201, created.body
    budget = created.json()
    assert budget["id"].startswith("bgt_")
    assert (budget["amount"], budget["currency"], budget["mode"]) == ("12.5", "USD", "hard")
    async with world.db.read() as tx:
        assert (await repo.get_budget(tx, budget["id"])).amount_nanos == 12_500_000_000
    again = await call(world.app, "POST", f"{V1}/budgets",
                       {**body, "amount": 500, "currency": "usd", "mode": "soft"}, secret=admin)
    assert again.status == 200 and again.json()["id"] == budget["id"]
    assert (again.json()["amount"], again.json()["mode"]) == ("500", "soft")
    other = await call(world.app, "POST", f"{V1}/budgets", {**body, "period": "lifetime",
                                                             "amount": "0.000000001"}, secret=admin)
    assert other.status == 201 and other.json()["id"] != budget["id"]
    assert other.json()["amount"] == "0.000000001"
    assert await _revision(world) == start + 3
    listed = await call(world.app, "GET", f"{V1}/budgets?key_id={key_id}", secret=admin)
    assert {b["period"] for b in listed.json()["data"]} == {"weekly", "lifetime"}


async def test_platform_currency_is_the_only_one(world: World) -> None:
    euro = build_admin_app(world.db, HASHER, currency="EUR")
    key_id, _ = await world.fresh_key()
    body = {"scope": "key", "key_id": key_id, "amount": "3", "period": "daily"}
    refused = await call(euro, "POST", f"{V1}/budgets", {**body, "currency": "USD"},
                         secret=world.secrets["admin"])
    assert refused.status == 422 and refused.json()["error"]["param"] == "currency"
    assert "EUR" in refused.json()["error"]["message"]
    taken = await call(euro, "POST", f"{V1}/budgets", body, secret=world.secrets["admin"])
    assert taken.status == 201 and taken.json()["currency"] == "EUR"
    with pytest.raises(ValueError, match="currency"):
        build_admin_app(world.db, HASHER, currency="XYZ")


async def test_team_weight_patch(world: World) -> None:
    team = await world.fresh_team()
    admin = world.secrets["admin"]
    start, tail = await _revision(world), await world.audit_tail()
    reply = await call(world.app, "PATCH", f"{V1}/teams/{team}", {"weight": 1000}, secret=admin)
    assert reply.status == 200 and reply.json()["weight"] == 1000
    assert await _revision(world) == start + 1
    unchanged = await call(world.app, "PATCH", f"{V1}/teams/{team}", {}, secret=admin)
    assert unchanged.status == 200 and unchanged.json()["weight"] == 1000
    assert await _revision(world) == start + 1
    entries = await world.audit_since(tail)
    assert [e.action for e in entries] == ["team.update", "team.update"]
    assert entries[0].before["weight"] == 1 and entries[0].after["weight"] == 1000


async def test_who_sees_which_rule(world: World) -> None:
    team_rule = await world.fresh_limit()
    member_key_rule = await world.fresh_limit("memberA")
    owner_key_rule = await world.fresh_limit("ownerA")
    admin = world.secrets["admin"]
    model_wide = (await call(world.app, "POST", f"{V1}/limits",
                             {"scope": "model", "model": world.unique("m"), "concurrency": 3},
                             secret=admin)).json()["id"]

    async def seen(role: str, query: str = "") -> set[str]:
        reply = await call(world.app, "GET", f"{V1}/limits?limit=1000{query}", secret=world.secrets[role])
        assert reply.status == 200, reply.body
        return {r["id"] for r in reply.json()["data"]}

    mine = {team_rule, member_key_rule, owner_key_rule, model_wide}
    assert mine <= await seen("admin") and mine <= await seen("billing")
    assert {team_rule, member_key_rule, owner_key_rule} <= await seen("ownerA")
    assert model_wide not in await seen("ownerA")
    member = await seen("memberA", f"&team_id={world.ids['A']}")
    assert {team_rule, member_key_rule} <= member and not {owner_key_rule, model_wide} & member
    assert not mine & await seen("ownerB")
    assert await seen("memberA", "&scope=key") >= {member_key_rule}
    assert team_rule not in await seen("memberA", "&scope=key")
    # Pagination over the in-memory list for team roles follows next_after like the store's.
    pages: list[str] = []
    after = ""
    while True:
        reply = await call(world.app, "GET", f"{V1}/limits?limit=1{after}", secret=world.secrets["ownerA"])
        page = reply.json()
        pages += [r["id"] for r in page["data"]]
        if page["next_after"] is None:
            break
        after = f"&after={page['next_after']}"
    assert pages == sorted(pages) and set(pages) == await seen("ownerA")


async def test_background_only_keys(world: World) -> None:
    body = {"name": "nightly", "team_id": world.ids["A"], "scopes": ["inference", "batch"],
            "background_only": True}
    created = await call(world.app, "POST", f"{V1}/keys", body, secret=world.secrets["memberA"])
    assert created.status == 201 and created.json()["background_only"] is True
    key_id = created.json()["id"]
    got = await call(world.app, "GET", f"{V1}/keys/{key_id}", secret=world.secrets["admin"])
    assert got.json()["background_only"] is True
    plain = await call(world.app, "GET", f"{V1}/keys/{world.ids['memberA_key']}",
                       secret=world.secrets["admin"])
    assert plain.json()["background_only"] is False
    rotated = await call(world.app, "POST", f"{V1}/keys/{key_id}/rotate", {"overlap_s": 0},
                         secret=world.secrets["memberA"])
    assert rotated.json()["background_only"] is True  # a rotation keeps it
    data = await repo.load_identity(world.db)
    flags = {k.id: k.background_only for k in data.keys}
    assert flags[rotated.json()["id"]] is True and flags[world.ids["memberA_key"]] is False
