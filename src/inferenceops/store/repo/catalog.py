"""The model catalog: deployments and models — create, read, list, update, delete — and the
whole catalog read at once (``load_catalog``). Providers are ``catalog_providers``, on the same
rules; the lock and row steps they share are ``catalog_rows``.

What a provider, deployment and model *are* is ``inferenceops.config.spec``'s ``ProviderSpec``,
``DeploymentSpec`` and ``ModelSpec``: every write is validated by building that spec (so the
store takes exactly what the platform YAML takes: a simulator deployment needs a profile, an
openai one replicas or a provider, …), and every record converts back to an equal spec
(``catalog_specs``). Creating takes a spec (or its JSON as a mapping); updating takes a
partial mapping of the spec's fields, merged over the stored spec and validated whole.

What one spec alone cannot tell is checked here, in the writer's transaction:

* unique names per kind (``Conflict`` naming the name);
* references by name resolved to ids — a deployment names its provider, a model its
  deployment (``NotFound`` naming the missing one);
* model names and aliases unique across all models (``Conflict`` naming the clash);
* nothing deleted while another row names it (``Conflict`` naming those rows; the foreign
  keys refuse it too) — a model's price for a deployment names that deployment.

A model's prices are rows of their own (``_schedule``; routes on them: ``prices``): created
as written with the model, synced on update to what the spec charges from now on.

Catalog writes are serialised so those checks cannot race (``catalog_rows.lock_catalog``): on
PostgreSQL by ``pg_advisory_xact_lock(CATALOG_LOCK_KEY)`` until the transaction ends; on SQLite
every write transaction already holds the database's write lock. Mutations that change something
bump the revision; validation failures are ``Invalid`` naming the field.

A provider's API key is stored only encrypted (``store.credentials``, bound to the provider's
id): records say ``has_api_key``; the plaintext leaves only through
``load_catalog(session, cipher)``. ``managed_by`` (None: the admin API; ``"config"``: a
platform file) is set by the caller that owns the row, and left alone by default on update.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.config.spec.deployments import DeploymentSpec
from inferenceops.config.spec.models import ModelSpec
from inferenceops.store import ids
from inferenceops.store.credentials import CredentialCipher
from inferenceops.store.errors import Conflict, CredentialsError, Invalid, NotFound
from inferenceops.store.records import CatalogData, DeploymentRecord, ModelRecord, Page
from inferenceops.store.repo._common import bump_revision, page, revision
from inferenceops.store.repo._schedule import (
    check_schedule,
    delete_entries,
    insert_entries,
    load_schedules,
    sync_schedule,
)
from inferenceops.store.repo.adapter_refs import (
    load_adapters,
    refuse_adapter_names,
    refuse_if_adapted,
)
from inferenceops.store.repo.catalog_rows import (
    UNCHANGED,
    ManagedBy,
    _apply,
    _check_name_free,
    _delete,
    _id_named,
    _insert,
    _merged,
    _names,
    _quoted,
    _row,
    lock_catalog,
)
from inferenceops.store.repo.catalog_specs import (
    deployment_columns,
    deployment_record,
    deployment_spec,
    model_columns,
    model_record,
    model_spec,
    provider_record,
    storable_deployment,
    validated,
)
from inferenceops.store.repo.model_routes import check_routes, refuse_if_routed
from inferenceops.store.tables import utcnow
from inferenceops.store.tables_catalog import Deployment, Model, ModelPrice, Provider

# ---- deployments ------------------------------------------------------------------------------

async def _deployment(session: AsyncSession, row: Deployment) -> DeploymentRecord:
    return deployment_record(row, (await _names(session, Provider, [row.provider_id])).get(
        row.provider_id or ""))


async def create_deployment(session: AsyncSession, spec: DeploymentSpec | Mapping[str, Any], *,
                            managed_by: str | None = None) -> DeploymentRecord:
    """A new deployment; its ``provider`` (a name) must exist."""
    spec = storable_deployment(validated(DeploymentSpec, spec, "a deployment"))
    await lock_catalog(session)
    await _check_name_free(session, Deployment, spec.name, "deployment")
    provider_id = await _id_named(session, Provider, spec.provider, "provider",
                                  f"deployment {spec.name!r}")
    row = Deployment(id=ids.new_id(ids.DEPLOYMENT), managed_by=managed_by,
                     **deployment_columns(spec, provider_id))
    await _insert(session, row, f"creating deployment {spec.name!r}")
    return deployment_record(row, spec.provider)


async def get_deployment(session: AsyncSession, deployment_id: str) -> DeploymentRecord:
    return await _deployment(session, await _row(session, Deployment, deployment_id, "deployment"))


async def get_deployment_by_name(session: AsyncSession, name: str) -> DeploymentRecord:
    row = (await session.execute(select(Deployment).where(Deployment.name == name))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no deployment named {name!r}")
    return await _deployment(session, row)


async def list_deployments(
    session: AsyncSession, *, name: str | None = None, engine: str | None = None,
    provider: str | None = None, managed_by: str | None = None, limit: int = 100,
    after: str | None = None,
) -> Page[DeploymentRecord]:
    """Deployments matching every filter (``provider``: its name; unknown is ``NotFound``), by name."""
    stmt = select(Deployment)
    for column, value in ((Deployment.name, name), (Deployment.engine, engine),
                          (Deployment.managed_by, managed_by)):
        if value is not None:
            stmt = stmt.where(column == value)
    if provider is not None:
        stmt = stmt.where(Deployment.provider_id == await _id_named(
            session, Provider, provider, "provider", None))
    rows = await page(session, stmt, Deployment.name, after, limit, lambda r: r, lambda r: r.name)
    names = await _names(session, Provider, [r.provider_id for r in rows.items])
    return Page(tuple(deployment_record(r, names.get(r.provider_id)) for r in rows.items),
                rows.next_after)


async def update_deployment(session: AsyncSession, deployment_id: str, changes: Mapping[str, Any], *,
                            managed_by: ManagedBy = UNCHANGED) -> DeploymentRecord:
    """Change the given ``DeploymentSpec`` fields; the result must be a valid spec as a whole."""
    await lock_catalog(session)
    row = await _row(session, Deployment, deployment_id, "deployment")
    current = deployment_spec(await _deployment(session, row))
    spec = storable_deployment(_merged(DeploymentSpec, current, changes, f"deployment {row.name!r}"))
    await _check_name_free(session, Deployment, spec.name, "deployment", row.id)
    if spec.name != row.name:
        await refuse_if_routed(session, "rename", deployment=row.name)
    provider_id = await _id_named(session, Provider, spec.provider, "provider",
                                  f"deployment {spec.name!r}")
    await _apply(session, row, deployment_columns(spec, provider_id), managed_by,
                 f"updating deployment {row.name!r}")
    return deployment_record(row, spec.provider)


async def delete_deployment(session: AsyncSession, deployment_id: str) -> None:
    """Delete a deployment no model uses (``Conflict`` naming the models that do)."""
    await lock_catalog(session)
    row = await _row(session, Deployment, deployment_id, "deployment")
    users = (await session.execute(select(Model.name).where(Model.deployment_id == row.id)
                                   .order_by(Model.name))).scalars().all()
    if users:
        raise Conflict(f"deployment {row.name!r} serves model(s) {_quoted(users)}; delete them or "
                       "move them to another deployment first")
    priced = (await session.execute(
        select(Model.name).join(ModelPrice, ModelPrice.model_id == Model.id)
        .where(ModelPrice.deployment_id == row.id).distinct().order_by(Model.name))).scalars().all()
    if priced:
        raise Conflict(f"deployment {row.name!r} has prices of model(s) {_quoted(priced)}; remove "
                       "those prices from the models first")
    await refuse_if_routed(session, "delete", deployment=row.name)
    await _delete(session, Deployment, row.id, f"deleting deployment {row.name!r}")


# ---- models -----------------------------------------------------------------------------------

async def _check_public_names(session: AsyncSession, spec: ModelSpec, model_id: str | None) -> None:
    """A model's name and aliases are unique among themselves and across every other model."""
    own = [spec.name, *spec.aliases]
    for i, public in enumerate(own):
        if public in own[:i]:
            raise Invalid(f"model {spec.name!r} lists {public!r} twice (name and aliases must "
                          "all differ)", field="aliases")
    stmt = select(Model.name, Model.aliases)
    if model_id is not None:
        stmt = stmt.where(Model.id != model_id)
    for other in await session.execute(stmt):
        taken = {other.name: "name", **{alias: "an alias" for alias in other.aliases}}
        for public in own:
            if public in taken:
                role = "the name" if taken[public] == "name" else "an alias"
                raise Conflict(f"model name or alias {public!r} of model {spec.name!r} is already "
                               f"{role} of model {other.name!r}")
    await refuse_adapter_names(session, own, spec.name)


async def _model(session: AsyncSession, row: Model) -> ModelRecord:
    deployment = (await _names(session, Deployment, [row.deployment_id]))[row.deployment_id]
    return model_record(row, deployment, (await load_schedules(session, [row.id])).get(row.id, ()))


async def create_model(session: AsyncSession, spec: ModelSpec | Mapping[str, Any], *,
                       managed_by: str | None = None) -> ModelRecord:
    """A new model; its ``deployment`` (a name) must exist, its name and aliases be free. Its
    price schedule is stored as written (``price`` from the beginning, then ``prices``)."""
    spec = validated(ModelSpec, spec, "a model")
    check_schedule(spec)
    await lock_catalog(session)
    await _check_public_names(session, spec, None)
    deployment_id = await _id_named(session, Deployment, spec.deployment, "deployment",
                                    f"model {spec.name!r}")
    assert deployment_id is not None
    await check_routes(session, spec, None)
    row = Model(id=ids.new_id(ids.MODEL), managed_by=managed_by, **model_columns(spec, deployment_id))
    await _insert(session, row, f"creating model {spec.name!r}")
    prices = await insert_entries(session, row.id, spec.name, spec.price_entries())
    return model_record(row, spec.deployment, prices)


async def get_model(session: AsyncSession, model_id: str) -> ModelRecord:
    return await _model(session, await _row(session, Model, model_id, "model"))


async def get_model_by_name(session: AsyncSession, name: str) -> ModelRecord:
    row = (await session.execute(select(Model).where(Model.name == name))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no model named {name!r}")
    return await _model(session, row)


async def list_models(
    session: AsyncSession, *, name: str | None = None, names: Collection[str] | None = None,
    deployment: str | None = None, model_type: str | None = None, managed_by: str | None = None,
    limit: int = 100, after: str | None = None,
) -> Page[ModelRecord]:
    """Models matching every filter, by name. ``names``: only these (e.g. a team's grants);
    ``deployment``: its name (unknown is ``NotFound``)."""
    stmt = select(Model)
    for column, value in ((Model.name, name), (Model.type, model_type),
                          (Model.managed_by, managed_by)):
        if value is not None:
            stmt = stmt.where(column == value)
    if names is not None:
        stmt = stmt.where(Model.name.in_(sorted(names)))
    if deployment is not None:
        stmt = stmt.where(Model.deployment_id == await _id_named(
            session, Deployment, deployment, "deployment", None))
    rows = await page(session, stmt, Model.name, after, limit, lambda r: r, lambda r: r.name)
    deployments = await _names(session, Deployment, [r.deployment_id for r in rows.items])
    schedules = await load_schedules(session, [r.id for r in rows.items])
    return Page(tuple(model_record(r, deployments[r.deployment_id], schedules.get(r.id, ()))
                      for r in rows.items), rows.next_after)


async def update_model(session: AsyncSession, model_id: str, changes: Mapping[str, Any], *,
                       managed_by: ManagedBy = UNCHANGED, now: datetime | None = None) -> ModelRecord:
    """Change the given ``ModelSpec`` fields. Grants and limits name models by name: renaming a
    model does not carry them over (as deleting one does not remove them).

    ``price`` and ``prices`` mean what the model charges from ``now`` (default: this instant) on,
    as ``model_spec`` shows it: a different price in force is a new entry starting now, changes
    to come are replaced, and what has started stays in the history (``metering.prices``).
    """
    now = now or utcnow()
    await lock_catalog(session)
    row = await _row(session, Model, model_id, "model")
    spec = _merged(ModelSpec, model_spec(await _model(session, row), now), changes,
                   f"model {row.name!r}")
    await _check_public_names(session, spec, row.id)
    deployment_id = await _id_named(session, Deployment, spec.deployment, "deployment",
                                    f"model {spec.name!r}")
    assert deployment_id is not None
    await check_routes(session, spec, row.id)
    if spec.name != row.name:
        await refuse_if_routed(session, "rename", model=row.name)
    changed = await _apply(session, row, model_columns(spec, deployment_id), managed_by,
                           f"updating model {row.name!r}")
    if await sync_schedule(session, row.id, spec, now) and not changed:
        await bump_revision(session)
    return await _model(session, row)


async def delete_model(session: AsyncSession, model_id: str) -> None:
    """Delete a model and its price schedule (usage records keep what they were charged)."""
    await lock_catalog(session)
    row = await _row(session, Model, model_id, "model")
    await refuse_if_routed(session, "delete", model=row.name)
    await refuse_if_adapted(session, row.id, row.name)
    await delete_entries(session, [p.id for p in (await load_schedules(session, [row.id])).get(row.id, [])])
    await _delete(session, Model, row.id, f"deleting model {row.name!r}")


# ---- the whole catalog ------------------------------------------------------------------------

async def load_catalog(session: AsyncSession, cipher: CredentialCipher | None = None, *,
                       unreadable: Callable[[str, CredentialsError], None] | None = None,
                       ) -> CatalogData:
    """Every provider, deployment and model, at the revision read in the same session.

    Pass a ``Database.read()`` session for one consistent snapshot. With ``cipher``, each
    provider's ``api_key`` is its decrypted key (``CredentialsError`` if one cannot be
    opened: another key, or altered — unless ``unreadable`` is given: it is told the
    provider's name and the error, and that provider's ``api_key`` stays None); without,
    ``api_key`` is None and ``has_api_key`` tells.
    """
    at = await revision(session)
    providers = (await session.execute(select(Provider).order_by(Provider.name))).scalars().all()
    deployments = (await session.execute(select(Deployment).order_by(Deployment.name))).scalars().all()
    models = (await session.execute(select(Model).order_by(Model.name))).scalars().all()
    provider_names = {p.id: p.name for p in providers}
    deployment_names = {d.id: d.name for d in deployments}
    schedules = await load_schedules(session)

    def key_of(row: Provider) -> str | None:
        if cipher is None or row.credentials_encrypted is None:
            return None
        try:
            return cipher.decrypt(row.credentials_encrypted, bound_to=row.id,
                                  what=f"provider {row.name!r}")
        except CredentialsError as exc:
            if unreadable is None:
                raise
            unreadable(row.name, exc)
            return None

    return CatalogData(
        at, tuple(provider_record(p, key_of(p)) for p in providers),
        tuple(deployment_record(d, provider_names.get(d.provider_id or "")) for d in deployments),
        tuple(model_record(m, deployment_names[m.deployment_id], schedules.get(m.id, ()))
              for m in models), await load_adapters(session))
