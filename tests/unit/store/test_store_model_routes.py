"""Models' canary splits and fallback chains in the store (SQLite, PostgreSQL): stored as
written, checked against what exists on every write, and never left naming something gone."""

from __future__ import annotations

from typing import Any

import pytest

from inferenceops.admission.config import StaticPolicy
from inferenceops.config.source import platform_from_store
from inferenceops.store import Conflict, Database, Invalid, repo


def sim(name: str) -> dict[str, Any]:
    return {"name": name, "engine": "simulator", "served_model": "m", "profile": "test-fast"}


async def world(db: Database) -> dict[str, str]:
    ids = {}
    async with db.transaction() as tx:
        for name in ("a", "b", "c", "d"):
            ids[name] = (await repo.create_deployment(tx, sim(name))).id
        ids["m2"] = (await repo.create_model(tx, {"name": "m2", "deployment": "c"})).id
        ids["m1"] = (await repo.create_model(tx, {
            "name": "m1", "deployment": "a", "canary": [{"deployment": "b", "percent": 10}],
            "fallbacks": [{"deployment": "d"}, {"model": "m2"}]})).id
    return ids


async def test_a_split_and_a_chain_are_stored_as_written_and_served(db: Database) -> None:
    ids = await world(db)
    async with db.read() as tx:
        stored = await repo.get_model(tx, ids["m1"])
        spec = repo.model_spec(stored)
        data = await repo.load_catalog(tx)
    assert [c.model_dump() for c in spec.canary] == [{"deployment": "b", "percent": 10.0}]
    assert [f.model_dump(exclude_none=True) for f in spec.fallbacks] == [{"deployment": "d"},
                                                                         {"model": "m2"}]
    catalog = platform_from_store(data, StaticPolicy(), loopback_base_url="http://x:1",
                                  environ={}).catalog
    model = catalog.model("m1")
    assert model is not None and model.split is not None
    assert [f.deployment.name for f in model.fallbacks] == ["d", "c"]
    async with db.transaction() as tx:  # taking them away stores NULL again
        await repo.update_model(tx, ids["m1"], {"canary": [], "fallbacks": []})
        cleared = repo.model_spec(await repo.get_model(tx, ids["m1"]))
    assert cleared.canary == [] and cleared.fallbacks == []


@pytest.mark.parametrize(("changes", "field"), [
    ({"canary": [{"deployment": "zz", "percent": 5}]}, "canary.0.deployment"),
    ({"fallbacks": [{"deployment": "zz"}]}, "fallbacks.0.deployment"),
    ({"fallbacks": [{"model": "nope"}]}, "fallbacks.0.model"),
    ({"fallbacks": [{"deployment": "a"}]}, "fallbacks.0.deployment"),
])
async def test_a_route_to_something_that_does_not_exist_is_refused_naming_it(
        db: Database, changes: dict[str, Any], field: str) -> None:
    ids = await world(db)
    with pytest.raises(Invalid) as refused:
        async with db.transaction() as tx:
            await repo.update_model(tx, ids["m1"], changes)
    assert refused.value.field == field


async def test_a_chain_that_comes_back_is_refused(db: Database) -> None:
    ids = await world(db)
    with pytest.raises(Invalid, match="m2 → m1 → m2"):
        async with db.transaction() as tx:
            await repo.update_model(tx, ids["m2"], {"fallbacks": [{"model": "m1"}]})


@pytest.mark.parametrize(("kind", "what", "changes"), [
    ("deployment", "b", None), ("deployment", "d", None), ("deployment", "b", {"name": "b2"}),
    ("model", "m2", None), ("model", "m2", {"name": "m3"}),
])
async def test_what_a_route_names_is_neither_deleted_nor_renamed(
        db: Database, kind: str, what: str, changes: dict[str, Any] | None) -> None:
    ids = await world(db)
    with pytest.raises(Conflict, match="'m1'"):
        async with db.transaction() as tx:
            if kind == "deployment" and changes is None:
                await repo.delete_deployment(tx, ids[what])
            elif kind == "deployment":
                await repo.update_deployment(tx, ids[what], changes)
            elif changes is None:
                await repo.delete_model(tx, ids[what])
            else:
                await repo.update_model(tx, ids[what], changes)
