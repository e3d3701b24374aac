"""Admin API for the model catalog beyond the RBAC matrix: bodies that are the platform YAML's
specs, validation naming the field, 404s, 409s (duplicates, alias clashes, referenced rows),
the write-only provider key, audit entries without secrets, the revision, team visibility.

Reuses the seeded world of ``test_admin_api`` (its own copy per backend, for this module).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from sqlalchemy import text
from tests.unit.admin.test_admin_api import CIPHER, HASHER, V1, World, call, world

from inferenceops.admin.api import build_admin_app
from inferenceops.admin.api import catalog_schemas as c
from inferenceops.config.spec.deployments import DeploymentSpec, ProviderSpec
from inferenceops.config.spec.models import ModelSpec
from inferenceops.store import repo

pytestmark = pytest.mark.asyncio(loop_scope="module")
__all__ = ["world"]  # the module-scoped fixture, imported so this module gets its own world

SECRET = "sk-upstream-very-secret-0123456789"
PLATFORM_BLOCK = """
providers:
  - name: {p}
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
deployments:
  - name: {d}
    engine: openai
    served_model: gpt-4o-mini
    provider: {p}
    timeouts: {{connect_s: 2.5, total_s: 120}}
    capacity: 32
  - name: {d}-sim
    engine: simulator
    profile: llama-3.1-8b-h100
    served_model: llama-3.1-8b-instruct
    replicas: 2
models:
  - name: {m}
    deployment: {d}
    aliases: [{m}-latest]
    price: {{input_per_million: "0.15", output_per_million: "0.60"}}
    max_output_tokens: 2048
"""
META = {"id", "provider_id", "deployment_id", "managed_by", "created_at", "updated_at",
        "has_api_key"}


async def _revision(w: World) -> int:
    async with w.db.read() as tx:
        return await repo.revision(tx)


def _spec_of(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in META}


async def _sim(w: World) -> dict[str, Any]:
    async with w.db.read() as tx:
        record = await repo.get_deployment(tx, await w.fresh_deployment())
    return {"id": record.id, "name": record.name}


async def test_platform_yaml_blocks_post_as_they_are_and_round_trip(world: World) -> None:
    admin = world.secrets["admin"]
    names = {"p": world.unique("openai"), "d": world.unique("gpt"), "m": world.unique("mini")}
    block = yaml.safe_load(PLATFORM_BLOCK.format(**names))
    start, tail = await _revision(world), await world.audit_tail()
    created = {}
    for kind in ("providers", "deployments", "models"):
        for spec in block[kind]:
            reply = await call(world.app, "POST", f"{V1}/{kind}", spec, secret=admin)
            assert reply.status == 201, reply.body
            created[spec["name"]] = reply.json()
    assert await _revision(world) == start + 4
    provider, gpt = created[names["p"]], created[names["d"]]
    model = created[names["m"]]
    assert provider["id"].startswith("prov_") and provider["has_api_key"] is False
    assert provider["managed_by"] is None
    assert (gpt["provider"], gpt["provider_id"], gpt["replicas"]) == (names["p"], provider["id"], None)
    assert gpt["timeouts"] == {"connect_s": 2.5, "first_byte_s": 120.0, "between_chunks_s": 60.0,
                               "total_s": 120.0}
    assert (model["deployment_id"], model["price"], model["prices"]) == (gpt["id"], {
        "input_per_million": "0.15", "output_per_million": "0.60", "cached_input_per_million": None,
        "batch_discount_percent": "0"}, [])
    for kind, spec_class in (("providers", ProviderSpec), ("deployments", DeploymentSpec),
                             ("models", ModelSpec)):
        for spec in block[kind]:
            got = await call(world.app, "GET", f"{V1}/{kind}/{created[spec['name']]['id']}",
                             secret=admin)
            assert got.json() == created[spec["name"]]
            assert spec_class.model_validate(_spec_of(got.json())) == spec_class.model_validate(spec)
    entries = await world.audit_since(tail)
    assert [e.action for e in entries] == ["provider.create", "deployment.create",
                                           "deployment.create", "model.create"]
    assert entries[0].after["name"] == names["p"] and entries[0].before is None


@pytest.mark.parametrize(("method", "path", "body", "param"), [
    ("POST", "/providers", {"name": "bad name", "base_url": "https://x.example/v1"}, "name"),
    ("POST", "/providers", {"name": "p", "base_url": "ftp://x.example"}, "base_url"),
    ("POST", "/providers", {"name": "p", "base_url": "https://x.example/v1", "dialect": "grpc"},
     "dialect"),
    ("POST", "/providers", {"name": "p", "base_url": "https://x.example/v1", "api_key": ""}, "api_key"),
    ("POST", "/providers", {"name": "p", "base_url": "https://x.example/v1", "api_key": "a b"},
     "api_key"),
    ("POST", "/providers", {"name": "p", "base_url": "https://x.example/v1", "colour": "red"}, "colour"),
    ("POST", "/deployments", {"name": "d", "engine": "simulator", "served_model": "m"}, "profile"),
    ("POST", "/deployments", {"name": "d", "engine": "openai", "served_model": "m"}, "replicas"),
    ("POST", "/deployments", {"name": "d", "engine": "simulator", "served_model": "m",
                              "profile": "p", "provider": "x"}, "provider"),
    ("POST", "/deployments", {"name": "d", "engine": "openai", "served_model": "m",
                              "replicas": [{"url": "not a url"}]}, "replicas.0.url"),
    ("POST", "/deployments", {"name": "d", "engine": "tgi", "served_model": "m"}, "engine"),
    ("POST", "/deployments", {"name": "d", "engine": "simulator", "served_model": "m",
                              "profile": "p", "max_connections": 0}, "max_connections"),
    ("POST", "/deployments", {"name": "d", "engine": "simulator", "served_model": "m",
                              "profile": "p", "timeouts": {"connect_s": -1}}, "timeouts.connect_s"),
    ("POST", "/deployments", {"name": "d", "engine": "simulator", "served_model": "m",
                              "profile": "p", "seed": 2**63}, "seed"),
    ("POST", "/models", {"name": "m", "deployment": "d", "type": "rerank"}, "type"),
    ("POST", "/models", {"name": "m", "deployment": "d", "aliases": ["ok", "bad alias"]}, "aliases.1"),
    ("POST", "/models", {"name": "m", "deployment": "{sim}", "aliases": ["m"]}, "aliases"),
    ("POST", "/models", {"name": "m", "deployment": "d", "price": {"input_per_million": -1}},
     "price.input_per_million"),
    ("POST", "/models", {"deployment": "d"}, "name"),
    ("PATCH", "/deployments/{sim_id}", {"engine": "openai"}, "replicas"),
    ("PATCH", "/deployments/{sim_id}", {"replicas": 0}, "replicas"),
    ("PATCH", "/deployments/{sim_id}", {"bogus": 1}, "bogus"),
    ("PATCH", "/deployments/{sim_id}", {"name": None}, "name"),
    ("PATCH", "/providers/{provider_id}", {"api_key": SECRET}, "api_key"),  # write-only: PUT
    ("PATCH", "/providers/{provider_id}", {"base_url": "nope"}, "base_url"),
    ("PUT", "/providers/{provider_id}/api-key", {"api_key": "two words"}, "api_key"),
    ("PUT", "/providers/{provider_id}/api-key", {}, "api_key"),
    ("GET", "/models?type=rerank", None, "type"),
    ("GET", "/deployments?engine=tgi", None, "engine"),
    ("GET", "/providers?limit=0", None, "limit"),
])
async def test_validation_errors_name_the_field(world: World, method: str, path: str, body: Any,
                                                param: str) -> None:
    sim = await _sim(world)
    ids = {"sim": sim["name"], "sim_id": sim["id"], "provider_id": await world.fresh_provider()}
    if isinstance(body, dict):
        body = {k: v.format(**ids) if isinstance(v, str) else v for k, v in body.items()}
    tail, revision = await world.audit_tail(), await _revision(world)
    reply = await call(world.app, method, V1 + path.format(**ids), body, secret=world.secrets["admin"])
    assert reply.status == 422, reply.body
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error
    assert SECRET not in reply.body.decode()
    assert await world.audit_since(tail) == [] and await _revision(world) == revision


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/providers/prov_nope", None),
    ("PATCH", "/providers/prov_nope", {"api_key_env": "X"}),
    ("DELETE", "/providers/prov_nope", None),
    ("PUT", "/providers/prov_nope/api-key", {"api_key": SECRET}),
    ("DELETE", "/providers/prov_nope/api-key", None),
    ("DELETE", "/providers/{provider_id}/api-key", None),  # it has no key
    ("GET", "/deployments/dep_nope", None),
    ("PATCH", "/deployments/dep_nope", {"capacity": 3}),
    ("DELETE", "/deployments/dep_nope", None),
    ("GET", "/deployments?provider=no-such-provider", None),
    ("POST", "/deployments", {"name": "d-x", "engine": "openai", "served_model": "m",
                              "provider": "no-such-provider"}),
    ("PATCH", "/deployments/{sim_id}", {"engine": "openai", "profile": None, "replicas": None,
                                        "provider": "no-such-provider"}),
    ("GET", "/models/mdl_nope", None),
    ("PATCH", "/models/mdl_nope", {"type": "chat"}),
    ("DELETE", "/models/mdl_nope", None),
    ("GET", "/models?deployment=no-such-deployment", None),
    ("POST", "/models", {"name": "m-x", "deployment": "no-such-deployment"}),
])
async def test_unknown_ids_and_names_are_404(world: World, method: str, path: str, body: Any) -> None:
    ids = {"provider_id": await world.fresh_provider(), "sim_id": (await _sim(world))["id"]}
    tail = await world.audit_tail()
    reply = await call(world.app, method, V1 + path.format(**ids), body, secret=world.secrets["admin"])
    assert reply.status == 404, reply.body
    assert reply.json()["error"]["code"] == "not_found"
    assert await world.audit_since(tail) == []


async def test_duplicates_alias_clashes_and_referenced_rows_are_409(world: World) -> None:
    admin = world.secrets["admin"]
    p, d, m = world.unique("p"), world.unique("d"), world.unique("m")
    bodies = {"providers": {"name": p, "base_url": "https://x.example/v1"},
              "deployments": {"name": d, "engine": "openai", "served_model": "s", "provider": p},
              "models": {"name": m, "deployment": d, "aliases": [f"{m}-a"]}}
    made = {}
    for kind, body in bodies.items():
        made[kind] = (await call(world.app, "POST", f"{V1}/{kind}", body, secret=admin)).json()
        again = await call(world.app, "POST", f"{V1}/{kind}", body, secret=admin)
        assert again.status == 409, again.body
        assert repr(body["name"]) in again.json()["error"]["message"]
    tail, revision = await world.audit_tail(), await _revision(world)
    clashes = [({"name": f"{m}-a", "deployment": d}, f"{m}-a"),          # name = another's alias
               ({"name": world.unique("n"), "deployment": d, "aliases": [m]}, m),  # alias = name
               ({"name": world.unique("n"), "deployment": d, "aliases": [f"{m}-a"]}, f"{m}-a")]
    for body, clash in clashes:
        reply = await call(world.app, "POST", f"{V1}/models", body, secret=admin)
        assert reply.status == 409 and reply.json()["error"]["code"] == "conflict", reply.body
        assert repr(clash) in reply.json()["error"]["message"] and repr(m) in reply.json()["error"]["message"]
    other = await call(world.app, "POST", f"{V1}/models", {"name": world.unique("o"), "deployment": d},
                       secret=admin)
    renamed = await call(world.app, "PATCH", f"{V1}/models/{other.json()['id']}",
                         {"aliases": [f"{m}-a"]}, secret=admin)
    assert renamed.status == 409
    tail, revision = await world.audit_tail(), await _revision(world)
    used = await call(world.app, "DELETE", f"{V1}/providers/{made['providers']['id']}", secret=admin)
    assert used.status == 409 and repr(d) in used.json()["error"]["message"]
    serving = await call(world.app, "DELETE", f"{V1}/deployments/{made['deployments']['id']}",
                         secret=admin)
    assert serving.status == 409 and repr(m) in serving.json()["error"]["message"]
    assert await world.audit_since(tail) == [] and await _revision(world) == revision
    for kind, item in (("models", other.json()), ("models", made["models"]),
                       ("deployments", made["deployments"]), ("providers", made["providers"])):
        assert (await call(world.app, "DELETE", f"{V1}/{kind}/{item['id']}", secret=admin)).status == 204
    entries = await world.audit_since(tail)
    assert [e.action for e in entries] == ["model.delete", "model.delete", "deployment.delete",
                                           "provider.delete"]
    assert entries[-1].before["name"] == p and entries[-1].after is None
    assert await _revision(world) == revision + 4


async def test_the_provider_key_is_write_only_and_encrypted(world: World) -> None:
    admin = world.secrets["admin"]
    start, tail = await _revision(world), await world.audit_tail()
    created = await call(world.app, "POST", f"{V1}/providers", {
        "name": world.unique("keyed"), "base_url": "https://x.example/v1", "api_key": SECRET},
        secret=admin)
    assert created.status == 201 and created.json()["has_api_key"] is True
    provider = created.json()
    assert "api_key" not in provider
    for path in (f"/providers/{provider['id']}", "/providers?limit=1000",
                 f"/providers?name={provider['name']}", f"/audit?target_id={provider['id']}"):
        reply = await call(world.app, "GET", V1 + path, secret=admin)
        assert reply.status == 200 and SECRET not in reply.body.decode()
    async with world.db.read() as tx:
        stored = (await tx.execute(text("SELECT credentials_encrypted FROM providers WHERE id = :id"),
                                   {"id": provider["id"]})).scalar_one()
        loaded = {p.id: p for p in (await repo.load_catalog(tx, CIPHER)).providers}
    assert SECRET.encode() not in bytes(stored) and loaded[provider["id"]].api_key == SECRET

    put = await call(world.app, "PUT", f"{V1}/providers/{provider['id']}/api-key",
                     {"api_key": SECRET + "-2"}, secret=admin)
    assert put.status == 200 and put.json()["has_api_key"] is True and SECRET not in put.body.decode()
    async with world.db.read() as tx:
        loaded = {p.id: p for p in (await repo.load_catalog(tx, CIPHER)).providers}
    assert loaded[provider["id"]].api_key == SECRET + "-2"
    cleared = await call(world.app, "DELETE", f"{V1}/providers/{provider['id']}/api-key", secret=admin)
    assert cleared.status == 204
    got = await call(world.app, "GET", f"{V1}/providers/{provider['id']}", secret=admin)
    assert got.json()["has_api_key"] is False
    assert await _revision(world) == start + 3
    entries = await world.audit_since(tail)
    assert [e.action for e in entries] == ["provider.create", "provider.set_key", "provider.clear_key"]
    assert [(e.before and e.before["has_api_key"], e.after["has_api_key"]) for e in entries] == [
        (None, True), (True, True), (True, False)]
    assert all(SECRET not in str((e.before, e.after)) for e in entries)


async def test_without_a_cipher_keys_are_refused_but_the_rest_works(world: World) -> None:
    keyless = build_admin_app(world.db, HASHER)
    admin = world.secrets["admin"]
    refused = await call(keyless, "POST", f"{V1}/providers", {
        "name": world.unique("p"), "base_url": "https://x.example/v1", "api_key": SECRET},
        secret=admin)
    assert refused.status == 503 and "INFERENCEOPS_CREDENTIALS_KEY" in refused.json()["error"]["message"]
    plain = await call(keyless, "POST", f"{V1}/providers", {
        "name": world.unique("p"), "base_url": "https://x.example/v1"}, secret=admin)
    assert plain.status == 201
    put = await call(keyless, "PUT", f"{V1}/providers/{plain.json()['id']}/api-key",
                     {"api_key": SECRET}, secret=admin)
    assert put.status == 503


async def test_patch_changes_only_what_is_sent_and_bumps_the_revision(world: World) -> None:
    admin = world.secrets["admin"]
    sim = await _sim(world)
    path = f"{V1}/deployments/{sim['id']}"
    before = (await call(world.app, "GET", path, secret=admin)).json()
    start, tail = await _revision(world), await world.audit_tail()
    reply = await call(world.app, "PATCH", path, {"replicas": 3, "capacity": 4,
                                                  "queue": {"max_waiting": 10}}, secret=admin)
    assert reply.status == 200, reply.body
    after = reply.json()
    assert (after["replicas"], after["capacity"], after["queue"]["max_waiting"]) == (3, 4, 10)
    assert after["profile"] == before["profile"] and after["timeouts"] == before["timeouts"]
    assert await _revision(world) == start + 1
    switched = await call(world.app, "PATCH", path, {
        "engine": "openai", "profile": None, "replicas": [{"url": "http://10.1.1.1:8000/v1"}]},
        secret=admin)
    assert switched.status == 200 and switched.json()["replicas"] == [{"url": "http://10.1.1.1:8000/v1"}]
    same = await call(world.app, "PATCH", path, {}, secret=admin)
    assert same.status == 200 and await _revision(world) == start + 2
    entries = await world.audit_since(tail)
    assert [e.action for e in entries] == ["deployment.update"] * 3
    assert entries[0].before["replicas"] is None and entries[0].after["replicas"] == 3


async def test_team_roles_see_only_their_granted_models(world: World) -> None:
    mine, theirs = await world.fresh_model("A"), await world.fresh_model("B")
    for role, team, visible, hidden in (("memberA", "A", mine, theirs), ("viewerA", "A", mine, theirs),
                                        ("saA", "A", mine, theirs), ("ownerB", "B", theirs, mine)):
        listed = await call(world.app, "GET", f"{V1}/models?limit=1000", secret=world.secrets[role])
        ids = {m["id"] for m in listed.json()["data"]}
        assert visible in ids and hidden not in ids, role
        async with world.db.read() as tx:
            granted = {g.model for g in await repo.list_grants(tx, world.ids[team])}
        assert {m["name"] for m in listed.json()["data"]} <= granted
    everything = await call(world.app, "GET", f"{V1}/models?limit=1000", secret=world.secrets["billing"])
    assert {mine, theirs} <= {m["id"] for m in everything.json()["data"]}
    refused = await call(world.app, "GET", f"{V1}/models?deployment=x", secret=world.secrets["memberA"])
    assert refused.status == 403


async def test_rows_a_platform_file_manages_show_it_and_stay_editable(world: World) -> None:
    admin = world.secrets["admin"]
    async with world.db.transaction() as tx:
        managed = await repo.create_provider(
            tx, {"name": world.unique("managed"), "base_url": "https://x.example/v1"},
            managed_by="config:/etc/inferenceops/platform.yaml")
    got = await call(world.app, "GET", f"{V1}/providers/{managed.id}", secret=admin)
    assert got.json()["managed_by"] == "config:/etc/inferenceops/platform.yaml"
    edited = await call(world.app, "PATCH", f"{V1}/providers/{managed.id}",
                        {"base_url": "https://eu.example/v1"}, secret=admin)
    assert edited.status == 200 and edited.json()["managed_by"] == got.json()["managed_by"]
    listed = await call(world.app, "GET", f"{V1}/providers?managed_by=config:/etc/inferenceops/"
                        "platform.yaml", secret=admin)
    assert [p["id"] for p in listed.json()["data"]] == [managed.id]


async def test_listings_page_by_name(world: World) -> None:
    for _ in range(3):
        await world.fresh_provider()
    seen: list[str] = []
    after = ""
    while True:
        page = (await call(world.app, "GET", f"{V1}/providers?limit=2{after}",
                           secret=world.secrets["auditor"])).json()
        seen += [p["name"] for p in page["data"]]
        if page["next_after"] is None:
            break
        after = f"&after={page['next_after']}"
    assert seen == sorted(seen) and len(seen) == len(set(seen)) >= 3


async def test_patch_bodies_have_exactly_the_specs_fields() -> None:
    for patch, spec in ((c.ProviderPatch, ProviderSpec), (c.DeploymentPatch, DeploymentSpec),
                        (c.ModelPatch, ModelSpec)):
        assert set(patch.model_fields) == set(spec.model_fields), patch.__name__
    assert set(c.ProviderCreate.model_fields) == set(ProviderSpec.model_fields) | {"api_key"}


# ---- a model's prices -------------------------------------------------------------------------

FUTURE = "2999-01-01T00:00:00Z"


async def _priced_model(w: World) -> dict[str, Any]:
    """A model priced from the beginning, with a change to come (and the deployment it runs on)."""
    sim = await _sim(w)
    body = {"name": w.unique("priced"), "deployment": sim["name"],
            "price": {"input_per_million": "0.60", "output_per_million": "0.80"},
            "prices": [{"effective_from": FUTURE, "input_per_million": "0.5", "output_per_million": "0.7"}]}
    reply = await call(w.app, "POST", f"{V1}/models", body, secret=w.secrets["admin"])
    assert reply.status == 201, reply.body
    return {**reply.json(), "sim": sim}


async def test_a_models_price_history_schedules_and_deletes_are_audited(world: World) -> None:
    admin = world.secrets["admin"]
    model = await _priced_model(world)
    prices = f"{V1}/models/{model['id']}/prices"
    listed = await call(world.app, "GET", prices, secret=world.secrets["billing"])
    assert listed.status == 200 and listed.json()["next_after"] is None
    assert [(p["effective_from"], p["input_per_million"], p["state"]) for p in listed.json()["data"]] == [
        (None, "0.60", "in_force"), (FUTURE, "0.5", "scheduled")]
    start, tail = await _revision(world), await world.audit_tail()
    body = {"effective_from": "2998-06-01T02:00:00+02:00", "deployment": model["sim"]["name"],
            "input_per_million": "0.3", "output_per_million": "0.4", "cached_input_per_million": "0.03",
            "batch_discount_percent": "50"}
    added = await call(world.app, "POST", prices, body, secret=admin)
    assert added.status == 201, added.body
    price = added.json()
    assert (price["effective_from"], price["deployment"], price["deployment_id"], price["state"]) == (
        "2998-06-01T00:00:00Z", model["sim"]["name"], model["sim"]["id"], "scheduled")
    assert (price["cached_input_per_million"], price["batch_discount_percent"]) == ("0.03", "50")
    now = await call(world.app, "POST", prices, {"input_per_million": "0.7", "output_per_million": "0.9"},
                     secret=admin)  # no effective_from: from now
    assert now.status == 201 and now.json()["state"] == "in_force"
    got = (await call(world.app, "GET", f"{V1}/models/{model['id']}", secret=admin)).json()
    assert got["price"]["input_per_million"] == "0.7"  # the model's price in force now
    assert [p["effective_from"] for p in got["prices"]] == ["2998-06-01T00:00:00Z", FUTURE]
    deleted = await call(world.app, "DELETE", f"{prices}/{price['id']}", secret=admin)
    assert deleted.status == 204
    states = [(p["input_per_million"], p["state"])
              for p in (await call(world.app, "GET", prices, secret=admin)).json()["data"]]
    assert states == [("0.60", "history"), ("0.7", "in_force"), ("0.5", "scheduled")]
    entries = await world.audit_since(tail)
    assert [(e.action, e.target_type, e.target_id) for e in entries] == [
        ("model.add_price", "model", model["id"]), ("model.add_price", "model", model["id"]),
        ("model.delete_price", "model", model["id"])]
    assert entries[0].after["id"] == price["id"] and entries[2].before["id"] == price["id"]
    assert entries[2].after is None
    assert await _revision(world) == start + 3


async def test_changing_a_models_price_keeps_the_old_one_in_its_history(world: World) -> None:
    admin = world.secrets["admin"]
    model = await _priced_model(world)
    patched = await call(world.app, "PATCH", f"{V1}/models/{model['id']}",
                         {"price": {"input_per_million": "0.65", "output_per_million": "0.80"}},
                         secret=admin)
    assert patched.status == 200 and patched.json()["price"]["input_per_million"] == "0.65"
    history = (await call(world.app, "GET", f"{V1}/models/{model['id']}/prices", secret=admin)).json()
    assert [(p["input_per_million"], p["state"]) for p in history["data"]] == [
        ("0.60", "history"), ("0.65", "in_force"), ("0.5", "scheduled")]


@pytest.mark.parametrize(("body", "param"), [
    ({"input_per_million": "-1"}, "input_per_million"),
    ({"input_per_million": "one"}, "input_per_million"),
    ({"output_per_million": [1]}, "output_per_million"),
    ({"input_per_million": "1", "cached_input_per_million": "-0.5"}, "cached_input_per_million"),
    ({"input_per_million": "1", "batch_discount_percent": 101}, "batch_discount_percent"),
    ({"input_per_million": "1", "effective_from": "10/12/2026"}, "effective_from"),
    ({"input_per_million": "1", "effective_from": "2999-01-01T00:00:00"}, "effective_from"),
    ({"input_per_million": "1", "effective_from": "9999-12-31T23:59:59-14:00"}, "effective_from"),
    ({"input_per_million": "1", "effective_from": "2001-01-01T00:00:00Z"}, "effective_from"),  # past
    ({"input_per_million": "1", "deployment": "bad name"}, "deployment"),
    ({"input_per_million": "1", "colour": "red"}, "colour"),
])
async def test_a_bad_price_is_422_naming_the_field_and_nothing_is_written(world: World, body: Any,
                                                                         param: str) -> None:
    model = await _priced_model(world)
    tail, revision = await world.audit_tail(), await _revision(world)
    reply = await call(world.app, "POST", f"{V1}/models/{model['id']}/prices", body,
                       secret=world.secrets["admin"])
    assert reply.status == 422, reply.body
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error
    assert await world.audit_since(tail) == [] and await _revision(world) == revision
    history = await call(world.app, "GET", f"{V1}/models/{model['id']}/prices",
                         secret=world.secrets["admin"])
    assert len(history.json()["data"]) == 2


@pytest.mark.parametrize(("body", "param"), [
    ({"prices": [{"effective_from": "tomorrow", "input_per_million": "1"}]}, "prices.0.effective_from"),
    ({"prices": [{"input_per_million": "1"}]}, "prices.0.effective_from"),  # the model's needs one
    ({"prices": [{"effective_from": FUTURE, "input_per_million": "1"},
                 {"effective_from": FUTURE, "input_per_million": "2"}]}, "prices.1.effective_from"),
    ({"price": {"output_per_million": "-3"}}, "price.output_per_million"),
])
async def test_a_bad_schedule_in_a_model_is_422_naming_the_field(world: World, body: Any,
                                                                param: str) -> None:
    model = await _priced_model(world)
    tail, revision = await world.audit_tail(), await _revision(world)
    reply = await call(world.app, "PATCH", f"{V1}/models/{model['id']}", body,
                       secret=world.secrets["admin"])
    assert reply.status == 422, reply.body
    assert reply.json()["error"]["param"] == param, reply.json()
    assert await world.audit_since(tail) == [] and await _revision(world) == revision


async def test_history_duplicates_and_unknown_names_are_409_and_404(world: World) -> None:
    admin = world.secrets["admin"]
    model = await _priced_model(world)
    prices = f"{V1}/models/{model['id']}/prices"
    history = (await call(world.app, "GET", prices, secret=admin)).json()["data"]
    tail, revision = await world.audit_tail(), await _revision(world)
    started = await call(world.app, "DELETE", f"{prices}/{history[0]['id']}", secret=admin)
    assert started.status == 409 and "history" in started.json()["error"]["message"]
    twice = await call(world.app, "POST", prices, {"effective_from": FUTURE, "input_per_million": "1"},
                       secret=admin)
    assert twice.status == 409 and twice.json()["error"]["code"] == "conflict"
    for method, path, body in (("POST", prices, {"input_per_million": "1", "deployment": "no-such"}),
                               ("GET", f"{V1}/models/mdl_nope/prices", None),
                               ("POST", f"{V1}/models/mdl_nope/prices", {"input_per_million": "1"}),
                               ("DELETE", f"{prices}/prc_nope", None),
                               ("DELETE", f"{V1}/models/mdl_nope/prices/{history[1]['id']}", None)):
        reply = await call(world.app, method, path, body, secret=admin)
        assert reply.status == 404, (path, reply.body)
    assert await world.audit_since(tail) == [] and await _revision(world) == revision
    # A deployment a price names stays until the price goes.
    sim = model["sim"]
    spot = await call(world.app, "POST", prices, {"deployment": sim["name"], "input_per_million": "1",
                                                  "effective_from": FUTURE}, secret=admin)
    await call(world.app, "PATCH", f"{V1}/models/{model['id']}", {"deployment": (await _sim(world))["name"]},
               secret=admin)
    kept = await call(world.app, "DELETE", f"{V1}/deployments/{sim['id']}", secret=admin)
    assert kept.status == 409 and "prices of model" in kept.json()["error"]["message"]
    assert (await call(world.app, "DELETE", f"{prices}/{spot.json()['id']}", secret=admin)).status == 204
    assert (await call(world.app, "DELETE", f"{V1}/deployments/{sim['id']}", secret=admin)).status == 204


async def test_team_roles_read_the_prices_of_their_granted_models_only(world: World) -> None:
    model = await _priced_model(world)
    prices = f"{V1}/models/{model['id']}/prices"
    assert (await call(world.app, "GET", prices, secret=world.secrets["memberA"])).status == 404
    async with world.db.transaction() as tx:
        await repo.grant(tx, world.ids["A"], model["name"])
    assert (await call(world.app, "GET", prices, secret=world.secrets["memberA"])).status == 200
    assert (await call(world.app, "POST", prices, {"input_per_million": "1"},
                       secret=world.secrets["ownerA"])).status == 403
