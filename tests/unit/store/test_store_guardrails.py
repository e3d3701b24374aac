"""Guardrail policies and attachments in the store, on SQLite and PostgreSQL, and what a
snapshot makes of them together with the platform file's (``control.guardrails``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from inferenceops.admission.config import StaticPolicy
from inferenceops.control.guardrails import merge_guardrails
from inferenceops.control.policy import assemble_policy
from inferenceops.guardrails.spec import GuardrailsSpec
from inferenceops.platform.guardrails import SCOPES
from inferenceops.store import Conflict, Database, Invalid, NotFound, repo
from inferenceops.store.records_guardrails import GuardrailPolicyRecord, StoredGuardrails
from inferenceops.store.repo import guardrails as g
from inferenceops.store.tables_guardrails import ATTACH_SCOPES

BLOCK_CARDS: list[dict[str, Any]] = [{"entities": ["card"], "action": "block",
                                      "applies_to": ["input"]}]
REDACT_EMAIL: list[dict[str, Any]] = [{"entities": ["email"], "action": "redact"}]


async def _revision(db: Database) -> int:
    async with db.read() as session:
        return await repo.revision(session)


async def _world(db: Database, digest: Callable[[], bytes]) -> dict[str, str]:
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "research")
        user = await repo.create_user(tx, "u@x.io")
        await repo.set_membership(tx, team.id, user.id, "member")
        key = await repo.create_api_key(tx, name="k", prefix="sk-io-k", digest=digest(),
                                        user_id=user.id, team_id=team.id)
        deployment = await repo.create_deployment(tx, {
            "name": "dep", "engine": "simulator", "served_model": "m", "profile": "test-fast"})
        await repo.create_model(tx, {"name": "chat", "deployment": deployment.name})
    return {"team": team.id, "key": key.id}


def test_schema_scopes_match_the_platform() -> None:
    assert ATTACH_SCOPES == SCOPES


async def test_a_policy_is_versioned_by_its_changes(db: Database) -> None:
    start = await _revision(db)
    async with db.transaction() as tx:
        made = await g.create_policy(tx, "pii", BLOCK_CARDS, description="cards")
    assert (made.name, made.version, made.id[:4]) == ("pii", 1, "grp_")
    assert made.rules == tuple(BLOCK_CARDS)
    async with db.transaction() as tx:
        same, changed = await g.update_policy(tx, "pii", BLOCK_CARDS, description="cards")
    assert not changed and same.version == 1
    async with db.transaction() as tx:
        second, changed = await g.update_policy(tx, "pii", BLOCK_CARDS + REDACT_EMAIL,
                                                description="cards")
        third, _ = await g.update_policy(tx, "pii", BLOCK_CARDS + REDACT_EMAIL)
    assert changed and (second.version, third.version) == (2, 3) and third.description == ""
    assert await _revision(db) == start + 3  # the unchanged update bumped nothing
    async with db.read() as session:
        assert await g.get_policy(session, "pii") == third
        assert [p.name for p in (await g.list_policies(session)).items] == ["pii"]


async def test_rules_are_read_by_the_platform_files_parser(db: Database) -> None:
    bad = {
        "rules.0.regex": [{"regex": "(", "action": "block"}],
        "rules.1.regex": [{"keywords": ["x"], "action": "flag"},
                          {"regex": "(a+)+$", "action": "block"}],
        "rules.0.entities.0": [{"entities": ["passport"], "action": "block"}],
        "rules.0.action": [{"entities": ["card"], "action": "shred"}],
        "rules": [],
        "name": [{"entities": ["card"], "action": "block"}],
    }
    for field, rules in bad.items():
        async with db.transaction() as tx:
            with pytest.raises(Invalid) as info:
                await g.create_policy(tx, "bad name!" if field == "name" else "p", rules)
        assert info.value.field == field, (field, str(info.value))
    async with db.transaction() as tx:
        await g.create_policy(tx, "pii", BLOCK_CARDS)
    async with db.transaction() as tx:
        with pytest.raises(Conflict):
            await g.create_policy(tx, "pii", REDACT_EMAIL)
    async with db.transaction() as tx:
        with pytest.raises(Conflict, match="platform file"):
            await g.create_policy(tx, "filed", REDACT_EMAIL, file_policies={"filed"})
    async with db.transaction() as tx:
        with pytest.raises(NotFound):
            await g.update_policy(tx, "nothing", REDACT_EMAIL)


async def test_attachments_name_what_exists_once_each(db: Database,
                                                      digest: Callable[[], bytes]) -> None:
    world = await _world(db, digest)
    async with db.transaction() as tx:
        await g.create_policy(tx, "pii", BLOCK_CARDS)
    start = await _revision(db)
    async with db.transaction() as tx:
        everywhere, made = await g.attach(tx, "pii", "global")
        again, made_again = await g.attach(tx, "pii", "global")
        team, _ = await g.attach(tx, "pii", "team", team_id=world["team"])
        model, _ = await g.attach(tx, "pii", "model", model="chat")
        key, _ = await g.attach(tx, "pii", "key", key_id=world["key"])
        filed, _ = await g.attach(tx, "from-file", "team", team_id=world["team"],
                                  file_policies={"from-file"})
    assert made and not made_again and again == everywhere and everywhere.id[:4] == "gra_"
    assert (team.team_id, model.model, key.key_id) == (world["team"], "chat", world["key"])
    assert await _revision(db) == start + 5
    refused = {
        "team_id": {"scope": "team", "team_id": "team_nope"},
        "key_id": {"scope": "key", "key_id": "key_nope"},
        "model": {"scope": "model", "model": "chat-alias"},
        "policy": {"scope": "global", "policy": "nothing"},
        "scope": {"scope": "galaxy"},
    }
    for field, where in refused.items():
        async with db.transaction() as tx:
            with pytest.raises(Invalid) as info:
                await g.attach(tx, where.pop("policy", "pii"), where.pop("scope"), **where)
        assert info.value.field == field
    async with db.transaction() as tx:
        with pytest.raises(Invalid) as info:
            await g.attach(tx, "pii", "global", team_id=world["team"])
    assert info.value.field == "team_id"
    async with db.transaction() as tx:  # attached: not deleted
        with pytest.raises(Conflict, match="detach"):
            await g.delete_policy(tx, "pii")
    async with db.transaction() as tx:
        for attachment in (everywhere, team, model, key):
            assert (await g.detach(tx, attachment.id)) == attachment
        deleted = await g.delete_policy(tx, "pii")
    assert deleted.name == "pii"
    async with db.read() as session:
        left = await g.load_guardrails(session)
    assert left.policies == () and [a.policy for a in left.attachments] == ["from-file"]
    async with db.transaction() as tx:  # a team's attachments go with the team
        await repo.delete_team(tx, world["team"])
    async with db.read() as session:
        assert (await g.load_guardrails(session)).attachments == ()


async def test_the_snapshot_serves_store_and_file_policies_together(
        db: Database, digest: Callable[[], bytes]) -> None:
    world = await _world(db, digest)
    file = GuardrailsSpec.model_validate({
        "policies": [{"name": "emails", "rules": REDACT_EMAIL}],
        "attach": [{"policy": "emails", "team": "research"}]})
    async with db.transaction() as tx:
        await g.create_policy(tx, "cards", BLOCK_CARDS)
        await g.attach(tx, "cards", "model", model="chat")
        await g.attach(tx, "emails", "key", key_id=world["key"], file_policies={"emails"})
    async with db.read() as session:
        stored = await g.load_guardrails(session)
    data = await repo.load_identity(db)
    policy = assemble_policy(StaticPolicy(guardrails=file), None, data, stored)
    effective = policy.guardrails.effective(world["team"], "chat", world["key"])
    assert effective is not None and effective.policies == ("cards@1", "emails@1")
    assert effective.entity_actions["input"] == {"card": "block", "email": "redact"}
    other = policy.guardrails.effective(None, "other-model", "key_other")
    assert other is None  # attached to the team, the model and the key only


def _record(name: str, rules: Any, version: int = 1) -> GuardrailPolicyRecord:
    from datetime import UTC, datetime
    now = datetime.now(UTC)
    return GuardrailPolicyRecord(f"grp_{name}", name, version, "", tuple(rules), now, now)


def test_the_file_wins_a_name_and_bad_rows_are_left_out(caplog: pytest.LogCaptureFixture) -> None:
    file = GuardrailsSpec.model_validate({"policies": [{"name": "pii", "rules": REDACT_EMAIL}],
                                          "attach": [{"policy": "pii"}]})
    stored = StoredGuardrails((_record("pii", BLOCK_CARDS, 7), _record("broken", [{"x": 1}]),
                               _record("cards", BLOCK_CARDS, 4)), ())
    served = merge_guardrails(file, stored, {})
    assert served is not None
    assert {n: p.version for n, p in served.policies.items()} == {"pii": 1, "cards": 4}
    assert "the file's applies" in caplog.text and "'broken' left out" in caplog.text
    assert merge_guardrails(None, StoredGuardrails(), {}) is None
