"""LoRA adapters in the store (SQLite, PostgreSQL): written only when their base model exists,
their names never a model's, a model they name never deleted under them; served from the
store's catalog; applied from a platform file."""

from __future__ import annotations

import pytest

from inferenceops.admission.config import StaticPolicy
from inferenceops.config.apply import apply_platform
from inferenceops.config.source import platform_from_store
from inferenceops.config.spec import PlatformSpec
from inferenceops.store import Conflict, Database, Invalid, repo

SIM = {"name": "d", "engine": "simulator", "served_model": "base", "profile": "test-fast"}


async def _world(db: Database) -> str:
    async with db.transaction() as tx:
        await repo.create_deployment(tx, SIM)
        return (await repo.create_model(tx, {"name": "m", "deployment": "d",
                                             "aliases": ["m-alias"]})).id


async def test_an_adapter_is_stored_served_and_follows_its_model(db: Database) -> None:
    model_id = await _world(db)
    async with db.transaction() as tx:
        made = await repo.create_adapter(tx, {"name": "tone", "base_model": "m",
                                              "source": "/loras/tone"})
        assert (made.base_model, made.model_id, made.description) == ("m", model_id, "")
        await repo.update_model(tx, model_id, {"name": "m2"})  # a rename carries it along
        assert (await repo.get_adapter(tx, made.id)).base_model == "m2"
    async with db.read() as tx:
        data = await repo.load_catalog(tx)
    assert [(a.name, a.base_model) for a in data.adapters] == [("tone", "m2")]
    catalog = platform_from_store(data, StaticPolicy(), loopback_base_url="http://x:1",
                                  environ={}).catalog
    adapter = catalog.adapter("tone")
    assert adapter is not None and adapter.model is catalog.model("m2")


async def test_bad_references_and_clashes_are_refused(db: Database) -> None:
    model_id = await _world(db)
    async with db.transaction() as tx:
        with pytest.raises(Invalid) as unknown:
            await repo.create_adapter(tx, {"name": "x", "base_model": "nope", "source": "/l"})
        assert unknown.value.field == "base_model"
        with pytest.raises(Invalid) as alias:
            await repo.create_adapter(tx, {"name": "x", "base_model": "m-alias", "source": "/l"})
        assert alias.value.field == "base_model"
        with pytest.raises(Invalid) as empty:
            await repo.create_adapter(tx, {"name": "x", "base_model": "m"})
        assert empty.value.field == "source"
        with pytest.raises(Conflict, match="alias of model 'm'"):
            await repo.create_adapter(tx, {"name": "m-alias", "base_model": "m", "source": "/l"})
        await repo.create_adapter(tx, {"name": "tone", "base_model": "m", "source": "/l"})
        with pytest.raises(Conflict, match="already exists"):
            await repo.create_adapter(tx, {"name": "tone", "base_model": "m", "source": "/k"})
    async with db.transaction() as tx:
        with pytest.raises(Conflict, match="the name of an adapter"):
            await repo.create_model(tx, {"name": "tone", "deployment": "d"})
    async with db.transaction() as tx:
        with pytest.raises(Conflict, match="adapter\\(s\\) 'tone' name it"):
            await repo.delete_model(tx, model_id)
    async with db.transaction() as tx:
        await repo.delete_adapter(tx, (await repo.get_adapter_by_name(tx, "tone")).id)
        await repo.delete_model(tx, model_id)  # nothing names it now


async def test_apply_creates_updates_and_removes_adapters_in_order(db: Database) -> None:
    base = {"deployments": [SIM], "models": [{"name": "m", "deployment": "d"}]}
    spec = PlatformSpec.model_validate({**base, "adapters": [
        {"name": "tone", "base_model": "m", "source": "/l"}]})
    plan = await apply_platform(db, spec)
    assert [c.line() for c in plan.changes if c.kind == "adapter"] == ["+ adapter tone"]
    assert (await apply_platform(db, spec)).changes == ()  # idempotent
    moved = PlatformSpec.model_validate({**base, "adapters": [
        {"name": "tone", "base_model": "m", "source": "/k"}]})
    assert [c.line() for c in (await apply_platform(db, moved)).changes] == [
        "~ adapter tone (source)"]
    # The model and its adapter leave together: the adapter first.
    gone = PlatformSpec.model_validate({"deployments": [SIM],
                                        "models": [{"name": "n", "deployment": "d"}]})
    await apply_platform(db, gone)
    async with db.read() as tx:
        data = await repo.load_catalog(tx)
    assert data.adapters == () and [m.name for m in data.models] == ["n"]
