"""The model catalog in the store — providers, deployments, models — on SQLite and PostgreSQL.

The platform YAML's specs are the definition: what they accept is stored and comes back as an
equal spec; what they refuse is ``Invalid`` naming the field. Plus what a spec alone cannot
tell (unique names and aliases, references by name, nothing deleted while named), provider
keys encrypted at rest, and the revision bumped by every change.
"""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, text, update

from inferenceops.config.spec.deployments import DeploymentSpec, ProviderSpec
from inferenceops.config.spec.models import ModelSpec
from inferenceops.store import (
    Conflict,
    CredentialCipher,
    CredentialsError,
    Database,
    Invalid,
    NotFound,
    StoreError,
    WrongCredentialsKey,
    repo,
)
from inferenceops.store.tables_catalog import Provider

CIPHER = CredentialCipher(os.urandom(32))
KEY = "sk-upstream-test-key-0123456789"
PROVIDER = {"name": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_KEY"}
SIM = {"name": "sim", "engine": "simulator", "served_model": "llama", "profile": "llama-3.1-8b-h100"}
MODEL = {"name": "chat", "deployment": "sim"}

DEPLOYMENTS = [
    SIM,
    {**SIM, "name": "sim-3", "replicas": 3, "seed": -7, "capacity": 16, "max_connections": 9,
     "timeouts": {"connect_s": 1.5, "total_s": 60}, "queue": {"max_waiting": 0}},
    {"name": "vllm", "engine": "openai", "served_model": "meta-llama/Llama-3.1-8B",
     "replicas": [{"url": "http://10.0.0.1:8000/v1"}, {"url": "http://10.0.0.2:8000/v1"}],
     "api_key_env": "VLLM_KEY"},
    {"name": "upstream", "engine": "openai", "served_model": "gpt-4o-mini", "provider": "openai"},
]
MODELS = [
    MODEL,
    {"name": "org/chat-pro", "deployment": "vllm", "aliases": ["pro", "chat-pro"], "type": "chat",
     "price": {"input_per_million": "0.15", "output_per_million": "0.600"}, "max_output_tokens": 99},
    {"name": "embed", "deployment": "upstream", "type": "embedding",
     "price": {"input_per_million": 1}},
]


async def _revision(db: Database) -> int:
    async with db.read() as session:
        return await repo.revision(session)


async def _catalog(db: Database) -> None:
    """One provider (with a key), every deployment and model of the lists above."""
    async with db.transaction() as tx:
        await repo.create_provider(tx, PROVIDER, api_key=KEY, cipher=CIPHER)
        for spec in DEPLOYMENTS:
            await repo.create_deployment(tx, spec)
        for spec in MODELS:
            await repo.create_model(tx, spec)


async def test_every_spec_round_trips(db: Database) -> None:
    start = await _revision(db)
    await _catalog(db)
    assert await _revision(db) == start + 1 + len(DEPLOYMENTS) + len(MODELS)
    async with db.read() as session:
        provider = await repo.get_provider_by_name(session, "openai")
        assert provider.id.startswith("prov_") and provider.has_api_key and provider.api_key is None
        assert provider.managed_by is None
        assert repo.provider_spec(provider) == ProviderSpec.model_validate(PROVIDER)
        for spec in DEPLOYMENTS:
            record = await repo.get_deployment_by_name(session, spec["name"])
            assert record.id.startswith("dep_")
            assert repo.deployment_spec(record) == DeploymentSpec.model_validate(spec)
            assert await repo.get_deployment(session, record.id) == record
        for spec in MODELS:
            record = await repo.get_model_by_name(session, spec["name"])
            assert record.id.startswith("mdl_")
            assert repo.model_spec(record) == ModelSpec.model_validate(spec)
            assert await repo.get_model(session, record.id) == record
        upstream = await repo.get_deployment_by_name(session, "upstream")
        assert (upstream.provider, upstream.provider_id, upstream.replicas) == ("openai", provider.id, None)
        assert (await repo.get_deployment_by_name(session, "vllm")).replicas == (
            "http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1")
        pro = await repo.get_model_by_name(session, "org/chat-pro")
        (entry,) = pro.prices  # the model's price from the beginning, as it was written
        assert (entry.deployment, entry.effective_from, entry.input_per_million,
                entry.output_per_million) == (None, None, "0.15", "0.600")
        assert repo.model_spec(pro).price.input_per_million == Decimal("0.15")  # type: ignore[union-attr]
        # "No replicas given" is JSON null in a NOT NULL column, not SQL NULL.
        raw = (await session.execute(text(
            "SELECT replicas IS NULL FROM deployments WHERE name = 'upstream'"))).scalar_one()
        assert raw in (False, 0)


async def test_load_catalog_decrypts_only_with_the_cipher(db: Database) -> None:
    await _catalog(db)
    async with db.read() as session:
        plain = await repo.load_catalog(session)
        opened = await repo.load_catalog(session, CIPHER)
        stored = (await session.execute(text("SELECT credentials_encrypted FROM providers"))).scalar_one()
    assert plain.revision == opened.revision == await _revision(db)
    assert [d.name for d in plain.deployments] == sorted(d["name"] for d in DEPLOYMENTS)
    assert [m.name for m in plain.models] == sorted(m["name"] for m in MODELS)
    (provider,) = plain.providers
    assert provider.has_api_key and provider.api_key is None
    assert opened.providers[0].api_key == KEY
    assert KEY not in repr(opened) and KEY not in repr(opened.providers[0])
    assert opened == plain  # the key is no part of a record's identity either
    assert KEY.encode() not in bytes(stored) and bytes(stored)[0] == 1


async def test_provider_keys_set_clear_and_fail_typed(db: Database) -> None:
    async with db.transaction() as tx:
        provider = await repo.create_provider(tx, {"name": "p", "base_url": "http://h:1/v1"})
        other = await repo.create_provider(tx, {"name": "q", "base_url": "http://h:2/v1"})
    assert not provider.has_api_key
    start = await _revision(db)
    async with db.transaction() as tx:
        with_key = await repo.set_provider_key(tx, provider.id, f"  {KEY}\n", CIPHER)
    assert with_key.has_api_key and with_key.updated_at >= provider.updated_at
    assert await _revision(db) == start + 1
    async with db.read() as session:
        assert (await repo.load_catalog(session, CIPHER)).providers[0].api_key == KEY  # stripped
        with pytest.raises(WrongCredentialsKey, match="provider 'p'"):
            await repo.load_catalog(session, CredentialCipher(os.urandom(32)))
    async with db.transaction() as tx:  # a blob copied onto another row does not open there
        await tx.execute(update(Provider).where(Provider.id == other.id).values(
            credentials_encrypted=(await tx.get(Provider, provider.id)).credentials_encrypted))  # type: ignore[union-attr]
    async with db.read() as session:
        with pytest.raises(CredentialsError, match="provider 'q'.*another row"):
            await repo.load_catalog(session, CIPHER)
        told: list[str] = []  # the serving path: one unreadable key does not sink the catalog
        lenient = await repo.load_catalog(session, CIPHER, unreadable=lambda name, _: told.append(name))
        assert [(p.name, p.api_key) for p in lenient.providers] == [("p", KEY), ("q", None)]
        assert told == ["q"]
    async with db.transaction() as tx:
        cleared = await repo.clear_provider_key(tx, other.id)
        assert not cleared.has_api_key
        with pytest.raises(NotFound, match="no stored API key"):
            await repo.clear_provider_key(tx, other.id)
        for bad in ("", "   ", "two words", "x" * 8193):
            with pytest.raises(Invalid) as caught:
                await repo.set_provider_key(tx, provider.id, bad, CIPHER)
            assert caught.value.field == "api_key"
        with pytest.raises(CredentialsError, match="cipher"):
            await repo.create_provider(tx, {"name": "r", "base_url": "http://h:3/v1"}, api_key=KEY)
        with pytest.raises(NotFound):
            await repo.set_provider_key(tx, "prov_nope", KEY, CIPHER)


@pytest.mark.parametrize(("create", "spec", "field"), [
    ("provider", {**PROVIDER, "base_url": "ftp://x"}, "base_url"),
    ("provider", {**PROVIDER, "name": "has space"}, "name"),
    ("provider", {**PROVIDER, "dialect": "anthropic"}, "dialect"),
    ("provider", {**PROVIDER, "colour": "red"}, "colour"),
    ("deployment", {**SIM, "profile": None}, "profile"),
    ("deployment", {**SIM, "replicas": 0}, "replicas"),
    ("deployment", {**SIM, "replicas": [{"url": "http://h:1/v1"}]}, "replicas"),
    ("deployment", {**SIM, "provider": "openai"}, "provider"),
    ("deployment", {"name": "o", "engine": "openai", "served_model": "m"}, "replicas"),
    ("deployment", {"name": "o", "engine": "openai", "served_model": "m", "profile": "p",
                    "replicas": [{"url": "http://h:1/v1"}]}, "profile"),
    ("deployment", {**SIM, "replicas": [{"url": "not a url"}], "engine": "openai", "profile": None},
     "replicas.0.url"),
    ("deployment", {**SIM, "engine": "tgi"}, "engine"),
    ("deployment", {**SIM, "max_connections": 0}, "max_connections"),
    ("deployment", {**SIM, "timeouts": {"connect_s": 0}}, "timeouts.connect_s"),
    ("deployment", {**SIM, "queue": {"max_waiting": -1}}, "queue.max_waiting"),
    ("deployment", {**SIM, "seed": 2**64}, "seed"),
    ("model", {**MODEL, "type": "rerank"}, "type"),
    ("model", {**MODEL, "aliases": ["ok", "bad alias"]}, "aliases.1"),
    ("model", {**MODEL, "aliases": ["chat"]}, "aliases"),
    ("model", {**MODEL, "aliases": ["a", "a"]}, "aliases"),
    ("model", {**MODEL, "price": {"input_per_million": -1}}, "price.input_per_million"),
    ("model", {**MODEL, "max_output_tokens": 0}, "max_output_tokens"),
    ("model", {"deployment": "sim"}, "name"),
])
async def test_what_the_yaml_refuses_is_invalid_naming_the_field(
        db: Database, create: str, spec: dict[str, Any], field: str) -> None:
    async with db.transaction() as tx:
        await repo.create_provider(tx, PROVIDER)
        await repo.create_deployment(tx, SIM)
    start = await _revision(db)
    with pytest.raises(Invalid) as caught:
        async with db.transaction() as tx:
            await getattr(repo, f"create_{create}")(tx, spec)
    assert caught.value.field == field, str(caught.value)
    assert await _revision(db) == start


async def test_references_by_name_must_exist(db: Database) -> None:
    async with db.transaction() as tx:
        with pytest.raises(NotFound, match="deployment 'upstream' names provider 'openai'"):
            await repo.create_deployment(tx, DEPLOYMENTS[3])
        with pytest.raises(NotFound, match="model 'chat' names deployment 'sim'"):
            await repo.create_model(tx, MODEL)
        with pytest.raises(NotFound, match="no provider named 'nope'"):
            await repo.list_deployments(tx, provider="nope")
        with pytest.raises(NotFound, match="no deployment named 'nope'"):
            await repo.list_models(tx, deployment="nope")
        for call in (repo.get_provider(tx, "prov_nope"), repo.get_deployment(tx, "dep_nope"),
                     repo.get_model(tx, "mdl_nope"), repo.delete_provider(tx, "prov_nope"),
                     repo.delete_deployment(tx, "dep_nope"), repo.delete_model(tx, "mdl_nope"),
                     repo.update_model(tx, "mdl_nope", {}), repo.get_model_by_name(tx, "nope")):
            with pytest.raises(NotFound):
                await call


async def test_names_and_aliases_are_unique_across_the_catalog(db: Database) -> None:
    await _catalog(db)
    start = await _revision(db)
    clashes = [
        (repo.create_provider, PROVIDER, "a provider named 'openai' already exists"),
        (repo.create_deployment, SIM, "a deployment named 'sim' already exists"),
        (repo.create_model, MODEL, "'chat' of model 'chat' is already the name of model 'chat'"),
        (repo.create_model, {**MODEL, "name": "pro"}, "'pro' .* is already an alias of model 'org/chat-pro'"),
        (repo.create_model, {**MODEL, "name": "x", "aliases": ["embed"]},
         "'embed' of model 'x' is already the name of model 'embed'"),
        (repo.create_model, {**MODEL, "name": "y", "aliases": ["chat-pro"]},
         "'chat-pro' of model 'y' is already an alias of model 'org/chat-pro'"),
    ]
    for create, spec, message in clashes:
        with pytest.raises(Conflict, match=message):
            async with db.transaction() as tx:
                await create(tx, spec)
    async with db.transaction() as tx:
        embed = await repo.get_model_by_name(tx, "embed")
        with pytest.raises(Conflict, match="'pro' of model 'embed' is already an alias"):
            await repo.update_model(tx, embed.id, {"aliases": ["e", "pro"]})
    async with db.transaction() as tx:  # its own name and aliases are no clash
        pro = await repo.get_model_by_name(tx, "org/chat-pro")
        again = await repo.update_model(tx, pro.id, {"aliases": ["chat-pro", "pro", "pro2"]})
    assert again.aliases == ("chat-pro", "pro", "pro2")
    assert await _revision(db) == start + 1


async def test_concurrent_writers_cannot_both_take_an_alias(db: Database) -> None:
    await _catalog(db)

    async def create(name: str) -> str:
        try:
            async with db.transaction() as tx:
                await repo.create_model(tx, {**MODEL, "name": name, "aliases": ["contested"]})
            return "created"
        except Conflict:
            return "conflict"

    for _ in range(3):
        results = await asyncio.gather(*(create(f"m{i}-{os.urandom(3).hex()}") for i in range(4)))
        assert results.count("created") <= 1
        async with db.transaction() as tx:
            for record in (await repo.list_models(tx, limit=1000)).items:
                if "contested" in record.aliases:
                    await repo.delete_model(tx, record.id)


async def test_nothing_named_elsewhere_can_be_deleted(db: Database) -> None:
    await _catalog(db)
    async with db.read() as session:
        provider = await repo.get_provider_by_name(session, "openai")
        upstream = await repo.get_deployment_by_name(session, "upstream")
        embed = await repo.get_model_by_name(session, "embed")
    start = await _revision(db)
    with pytest.raises(Conflict, match="provider 'openai' is used by deployment\\(s\\) 'upstream'"):
        async with db.transaction() as tx:
            await repo.delete_provider(tx, provider.id)
    with pytest.raises(Conflict, match="deployment 'upstream' serves model\\(s\\) 'embed'"):
        async with db.transaction() as tx:
            await repo.delete_deployment(tx, upstream.id)
    with pytest.raises(StoreError):  # the foreign keys refuse it too, past the repository
        async with db.transaction() as tx:
            await tx.execute(delete(Provider).where(Provider.id == provider.id))
    assert await _revision(db) == start
    async with db.transaction() as tx:
        await repo.delete_model(tx, embed.id)
        await repo.delete_deployment(tx, upstream.id)
        await repo.delete_provider(tx, provider.id)
        with pytest.raises(NotFound):
            await repo.get_provider(tx, provider.id)
    assert await _revision(db) == start + 3


async def test_partial_updates_validate_the_whole_spec(db: Database) -> None:
    await _catalog(db)
    async with db.read() as session:
        sim3 = await repo.get_deployment_by_name(session, "sim-3")
        provider = await repo.get_provider_by_name(session, "openai")
    start = await _revision(db)
    async with db.transaction() as tx:
        changed = await repo.update_deployment(tx, sim3.id, {"served_model": "llama-2", "capacity": None})
    assert (changed.served_model, changed.capacity, changed.replicas, changed.seed) == (
        "llama-2", None, 3, -7)
    assert changed.timeouts == sim3.timeouts and changed.updated_at >= sim3.updated_at
    assert await _revision(db) == start + 1
    async with db.transaction() as tx:  # nothing changes: no bump
        assert (await repo.update_deployment(tx, sim3.id, {"served_model": "llama-2"})).updated_at == (
            changed.updated_at)
    assert await _revision(db) == start + 1
    for changes, field in (({"engine": "openai"}, "replicas"),  # 3 is no list of URLs
                           ({"engine": "openai", "replicas": [{"url": "http://h:1/v1"}]}, "profile"),
                           ({"replicas": 65}, "replicas"),
                           ({"bogus": 1}, "bogus"), ({"name": None}, "name")):
        with pytest.raises(Invalid) as caught:
            async with db.transaction() as tx:
                await repo.update_deployment(tx, sim3.id, changes)
        assert caught.value.field == field
    async with db.transaction() as tx:  # an engine switch names what goes with it
        switched = await repo.update_deployment(tx, sim3.id, {
            "engine": "openai", "profile": None, "replicas": None, "provider": "openai"})
        assert (switched.provider_id, switched.replicas) == (provider.id, None)
        with pytest.raises(Conflict, match="deployment named 'vllm'"):
            await repo.update_deployment(tx, sim3.id, {"name": "vllm"})
        renamed = await repo.update_provider(tx, provider.id, {"name": "openai-eu"})
        assert (await repo.get_deployment(tx, sim3.id)).provider == renamed.name == "openai-eu"
        with pytest.raises(NotFound, match="names provider 'openai'"):
            await repo.update_deployment(tx, sim3.id, {"provider": "openai"})
    assert await _revision(db) == start + 3


async def test_managed_by_is_kept_unless_the_owner_says(db: Database) -> None:
    async with db.transaction() as tx:
        provider = await repo.create_provider(tx, PROVIDER, managed_by="config:/etc/platform.yaml")
        edited = await repo.update_provider(tx, provider.id, {"base_url": "https://eu.example/v1"})
        released = await repo.update_provider(tx, provider.id, {}, managed_by=None)
        sim = await repo.create_deployment(tx, SIM, managed_by="config:a.yaml")
        chat = await repo.create_model(tx, MODEL, managed_by="config:a.yaml")
        listed = await repo.list_models(tx, managed_by="config:a.yaml")
    assert provider.managed_by == edited.managed_by == "config:/etc/platform.yaml"
    assert released.managed_by is None and edited.base_url == "https://eu.example/v1"
    assert sim.managed_by == chat.managed_by == "config:a.yaml"
    assert [m.id for m in listed.items] == [chat.id]


async def test_listing_filters_and_pages_by_name(db: Database) -> None:
    await _catalog(db)
    async with db.read() as session:
        names = [d.name for d in (await repo.list_deployments(session)).items]
        assert names == sorted(names) and len(names) == len(DEPLOYMENTS)
        one = await repo.list_deployments(session, limit=2)
        rest = await repo.list_deployments(session, after=one.next_after)
        assert [d.name for d in one.items + rest.items] == names and rest.next_after is None
        assert {d.name for d in (await repo.list_deployments(session, engine="openai")).items} == {
            "vllm", "upstream"}
        assert [d.name for d in (await repo.list_deployments(session, provider="openai")).items] == [
            "upstream"]
        assert [d.name for d in (await repo.list_deployments(session, name="sim")).items] == ["sim"]
        assert [p.name for p in (await repo.list_providers(session, dialect="openai")).items] == ["openai"]
        assert (await repo.list_providers(session, managed_by="config:x")).items == ()
        assert [m.name for m in (await repo.list_models(session, model_type="embedding")).items] == [
            "embed"]
        assert [m.name for m in (await repo.list_models(session, deployment="vllm")).items] == [
            "org/chat-pro"]
        assert [m.name for m in (await repo.list_models(session, names={"embed", "chat", "x"})).items] == [
            "chat", "embed"]
        assert (await repo.list_models(session, names=set())).items == ()
        with pytest.raises(Invalid):
            await repo.list_models(session, limit=0)
