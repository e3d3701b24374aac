"""``inferenceops.config.apply``: the stored catalog made to match a platform file (SQLite and PostgreSQL).

Lives with the store tests for their per-backend ``db`` fixture.
"""

from __future__ import annotations

import pytest

from inferenceops.config.apply import MANAGED_BY, apply_platform
from inferenceops.config.spec import PlatformSpec, parse_platform
from inferenceops.store import Conflict, Database, repo

FILE = """\
providers:
  - {name: openai, base_url: "https://api.openai.com/v1", api_key_env: OPENAI_KEY}
deployments:
  - {name: gpt, engine: openai, provider: openai, served_model: gpt-4o-mini}
  - {name: sim, engine: simulator, profile: test-fast, served_model: sim-model, replicas: 2}
models:
  - {name: small, deployment: gpt, aliases: [gpt-4o-mini]}
  - {name: demo, deployment: sim, price: {input_per_million: "0.1", output_per_million: "0.2"}}
"""


def spec(text: str) -> PlatformSpec:
    parse_platform(text, source="p.yaml", loopback_base_url="http://x", environ={"OPENAI_KEY": "k"})
    import yaml

    return PlatformSpec.model_validate(yaml.safe_load(text))


async def catalog_names(db: Database) -> dict[str, list[tuple[str, str | None]]]:
    async with db.read() as tx:
        data = await repo.load_catalog(tx)
    return {"providers": [(p.name, p.managed_by) for p in data.providers],
            "deployments": [(d.name, d.managed_by) for d in data.deployments],
            "models": [(m.name, m.managed_by) for m in data.models]}


async def test_applying_a_file_creates_everything_and_a_second_time_changes_nothing(db: Database) -> None:
    first = await apply_platform(db, spec(FILE))
    assert not first.dry_run
    assert [c.line() for c in first.changes] == [
        "+ provider openai", "+ deployment gpt", "+ deployment sim", "+ model small", "+ model demo"]
    assert await catalog_names(db) == {
        "providers": [("openai", MANAGED_BY)],
        "deployments": [("gpt", MANAGED_BY), ("sim", MANAGED_BY)],
        "models": [("demo", MANAGED_BY), ("small", MANAGED_BY)]}
    again = await apply_platform(db, spec(FILE))
    assert again.changes == ()
    assert "already matches" in again.text()


async def test_a_dry_run_shows_the_plan_and_writes_nothing(db: Database) -> None:
    async with db.read() as tx:
        before = await repo.revision(tx)
    plan = await apply_platform(db, spec(FILE), dry_run=True)
    assert plan.dry_run and len(plan.changes) == 5 and plan.text().startswith("would change 5")
    assert await catalog_names(db) == {"providers": [], "deployments": [], "models": []}
    async with db.read() as tx:
        assert await repo.revision(tx) == before


async def test_changes_are_updates_deletes_and_names_moving_between_models(db: Database) -> None:
    await apply_platform(db, spec(FILE))
    changed = (FILE.replace("replicas: 2}", "replicas: 3, timeouts: {connect_s: 2}}")
               .replace("aliases: [gpt-4o-mini]}", "aliases: []}")
               .replace('price: {input_per_million: "0.1", output_per_million: "0.2"}}',
                        "aliases: [gpt-4o-mini]}"))
    plan = await apply_platform(db, spec(changed))
    assert [c.line() for c in plan.changes] == [
        "~ deployment sim (replicas, timeouts.connect_s)",
        "~ model small (aliases)",
        "~ model demo (aliases, price)"]
    async with db.read() as tx:
        demo = await repo.get_model_by_name(tx, "demo")
        sim = await repo.get_deployment_by_name(tx, "sim")
    assert demo.aliases == ("gpt-4o-mini",) and demo.prices == ()
    assert sim.replicas == 3 and sim.timeouts["connect_s"] == 2
    dropped = changed.replace("  - {name: small, deployment: gpt, aliases: []}\n", "")
    plan = await apply_platform(db, spec(dropped.replace(
        "  - {name: gpt, engine: openai, provider: openai, served_model: gpt-4o-mini}\n", "")))
    assert [c.line() for c in plan.changes] == ["- deployment gpt", "- model small"]


async def test_admin_api_rows_are_adopted_by_name_and_otherwise_left_alone(db: Database) -> None:
    async with db.transaction() as tx:
        await repo.create_deployment(tx, {"name": "sim", "engine": "simulator", "profile": "test-fast",
                                          "served_model": "old-name"})
        await repo.create_deployment(tx, {"name": "mine", "engine": "simulator",
                                          "profile": "test-fast", "served_model": "x"})
    plan = await apply_platform(db, spec(FILE))
    adopted = [c for c in plan.changes if c.adopt]
    assert [c.line() for c in adopted] == [
        "~ deployment sim (replicas, served_model) [adopted from the admin API]"]
    names = await catalog_names(db)
    assert ("mine", None) in names["deployments"] and ("sim", MANAGED_BY) in names["deployments"]


async def test_a_failing_apply_leaves_nothing_half_done(db: Database) -> None:
    await apply_platform(db, spec(FILE))
    async with db.transaction() as tx:  # an admin-API model on the file's deployment
        await repo.create_model(tx, {"name": "pinned", "deployment": "gpt"})
    without_gpt = (FILE.replace("  - {name: gpt, engine: openai, provider: openai, "
                                "served_model: gpt-4o-mini}\n", "")
                   .replace("  - {name: small, deployment: gpt, aliases: [gpt-4o-mini]}\n", "")
                   .replace("deployments:\n", "deployments:\n  - {name: extra, engine: simulator, "
                            "profile: test-fast, served_model: e}\n"))
    with pytest.raises(Conflict, match="pinned"):
        await apply_platform(db, spec(without_gpt))
    names = await catalog_names(db)
    assert ("extra", MANAGED_BY) not in names["deployments"]  # created, then rolled back
    assert ("small", MANAGED_BY) in names["models"]  # deleted, then rolled back


async def test_every_change_is_audited_with_the_actor(db: Database) -> None:
    await apply_platform(db, spec(FILE), actor="usr_ops", source="10.0.0.9")
    async with db.read() as tx:
        page = await repo.list_audit(tx, limit=50)
    entries = [(e.actor, e.action, e.source) for e in page.items]
    assert ("usr_ops", "provider.create", "10.0.0.9") in entries
    assert sum(1 for _, action, _ in entries if action == "model.create") == 2
