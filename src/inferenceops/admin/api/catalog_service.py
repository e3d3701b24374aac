"""Admin services for the model catalog: providers (and their API keys), deployments, models.

Same shape as ``services``: check the caller's ``Access``, run the store calls in one
transaction, append one audit entry per mutation (``before``/``after`` are the response
schemas — a provider's shows ``has_api_key``, never the key), return API schemas. The rules
of what may be stored are the store's (``repo.catalog``: the platform YAML's specs).

Who sees what (``deps``): platform roles with ``catalog:read`` (admin, auditor, billing) see
everything. A team role's ``catalog:read`` shows only the models granted to its teams (any
other model is a 404, as if it did not exist), and no provider or deployment: listing them
is a 403, reading one by id a 404. Only platform admins change the catalog (``catalog:write``).
Rows a platform file manages (``managed_by``) may be edited too: the file re-applies them.

A model's prices are read with the model (``catalog:read``, the same visibility) and changed
by platform admins: a price scheduled (``model.add_price``) or one still to come deleted
(``model.delete_price``), each audited on the model with the entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.admin.api import catalog_schemas as c
from inferenceops.admin.api import schemas as s
from inferenceops.admin.api.deps import Access, AdminContext
from inferenceops.admin.api.services import audit, page_of
from inferenceops.errors import NotFound, PermissionDenied, Unavailable
from inferenceops.metering.prices import price_spec
from inferenceops.platform import Deployment
from inferenceops.routing.health import FleetHealth
from inferenceops.store import CredentialCipher, repo
from inferenceops.store.records import DeploymentRecord
from inferenceops.store.repo import drains
from inferenceops.store.repo.drains import replica_ids


def _platform_only(access: Access, what: str) -> None:
    """Lists of providers and deployments are for platform roles (team roles see models only)."""
    if not access.everywhere:
        raise PermissionDenied(f"Your roles do not allow reading {what}: team roles see only "
                               "the models granted to their teams")


def _cipher(ctx: AdminContext) -> CredentialCipher:
    if ctx.cipher is None:
        raise Unavailable("This server has no credentials key, so it cannot store provider API "
                          "keys; it is built without one (see INFERENCEOPS_CREDENTIALS_KEY)")
    return ctx.cipher


async def granted_names(tx: AsyncSession, access: Access) -> set[str]:
    """The model (and adapter) names granted to the teams where the caller holds ``catalog:read``."""
    return {g.model for team in access.teams for g in await repo.list_grants(tx, team)}


# ---- providers --------------------------------------------------------------------------------

async def list_providers(ctx: AdminContext, access: Access, *, name: str | None, dialect: str | None,
                         managed_by: str | None, limit: int,
                         after: str | None) -> s.Page[c.ProviderOut]:
    _platform_only(access, "providers")
    async with ctx.db.read() as tx:
        return page_of(await repo.list_providers(tx, name=name, dialect=dialect, managed_by=managed_by,
                                                 limit=limit, after=after), c.ProviderOut.of)


async def get_provider(ctx: AdminContext, access: Access, provider_id: str) -> c.ProviderOut:
    access.check(None, f"provider {provider_id!r}")
    async with ctx.db.read() as tx:
        return c.ProviderOut.of(await repo.get_provider(tx, provider_id))


async def create_provider(ctx: AdminContext, access: Access, body: c.ProviderCreate) -> c.ProviderOut:
    access.check(None, "the catalog")
    secret = None if body.api_key is None else body.api_key.get_secret_value()
    cipher = None if secret is None else _cipher(ctx)
    async with ctx.db.transaction("creating a provider") as tx:
        out = c.ProviderOut.of(await repo.create_provider(tx, body.spec(), api_key=secret,
                                                          cipher=cipher))
        await audit(tx, access.principal, "provider.create", "provider", out.id, after=out)
    return out


async def update_provider(ctx: AdminContext, access: Access, provider_id: str,
                          body: c.ProviderPatch) -> c.ProviderOut:
    access.check(None, f"provider {provider_id!r}")
    async with ctx.db.transaction("updating a provider") as tx:
        before = c.ProviderOut.of(await repo.get_provider(tx, provider_id))
        out = c.ProviderOut.of(await repo.update_provider(tx, provider_id, body.changes()))
        await audit(tx, access.principal, "provider.update", "provider", provider_id,
                    before=before, after=out)
    return out


async def delete_provider(ctx: AdminContext, access: Access, provider_id: str) -> None:
    access.check(None, f"provider {provider_id!r}")
    async with ctx.db.transaction("deleting a provider") as tx:
        before = c.ProviderOut.of(await repo.get_provider(tx, provider_id))
        await repo.delete_provider(tx, provider_id)
        await audit(tx, access.principal, "provider.delete", "provider", provider_id, before=before)


async def set_provider_key(ctx: AdminContext, access: Access, provider_id: str,
                           body: c.ProviderKeySet) -> c.ProviderOut:
    access.check(None, f"provider {provider_id!r}")
    cipher = _cipher(ctx)
    async with ctx.db.transaction("storing a provider's API key") as tx:
        before = c.ProviderOut.of(await repo.get_provider(tx, provider_id))
        out = c.ProviderOut.of(await repo.set_provider_key(
            tx, provider_id, body.api_key.get_secret_value(), cipher))
        await audit(tx, access.principal, "provider.set_key", "provider", provider_id,
                    before=before, after=out)
    return out


async def clear_provider_key(ctx: AdminContext, access: Access, provider_id: str) -> None:
    access.check(None, f"provider {provider_id!r}")
    async with ctx.db.transaction("clearing a provider's API key") as tx:
        before = c.ProviderOut.of(await repo.get_provider(tx, provider_id))
        out = c.ProviderOut.of(await repo.clear_provider_key(tx, provider_id))
        await audit(tx, access.principal, "provider.clear_key", "provider", provider_id,
                    before=before, after=out)


# ---- deployments ------------------------------------------------------------------------------

async def list_deployments(ctx: AdminContext, access: Access, *, name: str | None, engine: str | None,
                           provider: str | None, managed_by: str | None, limit: int,
                           after: str | None) -> s.Page[c.DeploymentOut]:
    _platform_only(access, "deployments")
    async with ctx.db.read() as tx:
        return page_of(await repo.list_deployments(
            tx, name=name, engine=engine, provider=provider, managed_by=managed_by, limit=limit,
            after=after), c.DeploymentOut.of)


async def get_deployment(ctx: AdminContext, access: Access, deployment_id: str) -> c.DeploymentOut:
    access.check(None, f"deployment {deployment_id!r}")
    async with ctx.db.read() as tx:
        return c.DeploymentOut.of(await repo.get_deployment(tx, deployment_id))


async def create_deployment(ctx: AdminContext, access: Access,
                            body: c.DeploymentCreate) -> c.DeploymentOut:
    access.check(None, "the catalog")
    async with ctx.db.transaction("creating a deployment") as tx:
        out = c.DeploymentOut.of(await repo.create_deployment(tx, body))
        await audit(tx, access.principal, "deployment.create", "deployment", out.id, after=out)
    return out


async def update_deployment(ctx: AdminContext, access: Access, deployment_id: str,
                            body: c.DeploymentPatch) -> c.DeploymentOut:
    access.check(None, f"deployment {deployment_id!r}")
    async with ctx.db.transaction("updating a deployment") as tx:
        before = c.DeploymentOut.of(await repo.get_deployment(tx, deployment_id))
        out = c.DeploymentOut.of(await repo.update_deployment(tx, deployment_id, body.changes()))
        await audit(tx, access.principal, "deployment.update", "deployment", deployment_id,
                    before=before, after=out)
    return out


async def delete_deployment(ctx: AdminContext, access: Access, deployment_id: str) -> None:
    access.check(None, f"deployment {deployment_id!r}")
    async with ctx.db.transaction("deleting a deployment") as tx:
        before = c.DeploymentOut.of(await repo.get_deployment(tx, deployment_id))
        await repo.delete_deployment(tx, deployment_id)
        await audit(tx, access.principal, "deployment.delete", "deployment", deployment_id,
                    before=before)


# ---- replicas: drain, health -------------------------------------------------------------------

#: This process's replica health and the deployments it serves now (``app.build_process``).
FleetView = Callable[[], tuple[FleetHealth, Mapping[str, Deployment]]]


def _replicas(record: DeploymentRecord, drained: tuple[str, ...],
              fleet: FleetView | None) -> c.ReplicasOut:
    views: dict[str, dict[str, Any]] = {}
    if fleet is not None:
        health, served = fleet()
        deployment = served.get(record.name)
        if deployment is not None:
            views = {v.replica: asdict(v) for v in health.view(deployment)}
    for view in views.values():
        del view["replica"], view["drained"]
    return c.ReplicasOut(deployment=record.name, deployment_id=record.id, replicas=[
        c.ReplicaOut(id=rid, drained=rid in drained, health=views.get(rid))
        for rid in replica_ids(record)])


async def get_replicas(ctx: AdminContext, access: Access, deployment_id: str,
                       fleet: FleetView | None) -> c.ReplicasOut:
    access.check(None, f"deployment {deployment_id!r}")
    async with ctx.db.read() as tx:
        record = await repo.get_deployment(tx, deployment_id)
        drained = await drains.drained(tx, record.id)
    return _replicas(record, drained, fleet)


async def set_drained(ctx: AdminContext, access: Access, deployment_id: str, replica: str,
                      drain: bool, fleet: FleetView | None) -> c.ReplicasOut:
    """Drain or undrain one replica (audited on the deployment); every worker follows through
    its snapshot: no new work goes there, what is in flight finishes."""
    access.check(None, f"deployment {deployment_id!r}")
    verb = "drain" if drain else "undrain"
    async with ctx.db.transaction(f"{verb}ing a replica") as tx:
        record = await repo.get_deployment(tx, deployment_id)
        before = await drains.drained(tx, record.id)
        after = await drains.set_drained(tx, record, replica, drain, by=access.principal.actor)
        if after != before:
            await audit(tx, access.principal, f"deployment.{verb}", "deployment", record.id,
                        before=c.DrainedOut(replica=replica, drained=list(before)),
                        after=c.DrainedOut(replica=replica, drained=list(after)))
    return _replicas(record, after, fleet)


# ---- models -----------------------------------------------------------------------------------

async def list_models(ctx: AdminContext, access: Access, *, name: str | None, deployment: str | None,
                      model_type: str | None, managed_by: str | None, limit: int,
                      after: str | None) -> s.Page[c.ModelOut]:
    """Platform roles: every model. Team roles: the models granted to their teams."""
    async with ctx.db.read() as tx:
        names = None if access.everywhere else await granted_names(tx, access)
        if names is not None and deployment is not None:
            raise PermissionDenied("Your roles do not allow filtering models by deployment")
        return page_of(await repo.list_models(
            tx, name=name, names=names, deployment=deployment, model_type=model_type,
            managed_by=managed_by, limit=limit, after=after), c.ModelOut.of)


async def get_model(ctx: AdminContext, access: Access, model_id: str) -> c.ModelOut:
    async with ctx.db.read() as tx:
        model = await repo.get_model(tx, model_id)
        if not access.everywhere and model.name not in await granted_names(tx, access):
            raise NotFound(f"No model {model_id!r}")
    return c.ModelOut.of(model)


async def create_model(ctx: AdminContext, access: Access, body: c.ModelCreate) -> c.ModelOut:
    access.check(None, "the catalog")
    async with ctx.db.transaction("creating a model") as tx:
        out = c.ModelOut.of(await repo.create_model(tx, body))
        await audit(tx, access.principal, "model.create", "model", out.id, after=out)
    return out


async def update_model(ctx: AdminContext, access: Access, model_id: str,
                       body: c.ModelPatch) -> c.ModelOut:
    access.check(None, f"model {model_id!r}")
    async with ctx.db.transaction("updating a model") as tx:
        before = c.ModelOut.of(await repo.get_model(tx, model_id))
        out = c.ModelOut.of(await repo.update_model(tx, model_id, body.changes()))
        await audit(tx, access.principal, "model.update", "model", model_id, before=before, after=out)
    return out


async def delete_model(ctx: AdminContext, access: Access, model_id: str) -> None:
    access.check(None, f"model {model_id!r}")
    async with ctx.db.transaction("deleting a model") as tx:
        before = c.ModelOut.of(await repo.get_model(tx, model_id))
        await repo.delete_model(tx, model_id)
        await audit(tx, access.principal, "model.delete", "model", model_id, before=before)


# ---- a model's prices -------------------------------------------------------------------------

async def list_prices(ctx: AdminContext, access: Access, model_id: str) -> s.Page[c.PriceOut]:
    """The whole schedule (one page: a schedule is short). Team roles: of their granted models."""
    async with ctx.db.read() as tx:
        model = await repo.get_model(tx, model_id)
        if not access.everywhere and model.name not in await granted_names(tx, access):
            raise NotFound(f"No model {model_id!r}")
    return s.Page(data=c.PriceOut.schedule(model, datetime.now(UTC)), next_after=None)


async def add_price(ctx: AdminContext, access: Access, model_id: str,
                    body: c.PriceCreate) -> c.PriceOut:
    access.check(None, f"model {model_id!r}")
    async with ctx.db.transaction("scheduling a price") as tx:
        now = datetime.now(UTC)
        added = await repo.add_price(tx, model_id, price_spec(body), effective_from=body.effective_from,
                                     deployment=body.deployment, now=now)
        model = await repo.get_model(tx, model_id)
        out = next(p for p in c.PriceOut.schedule(model, now) if p.id == added.id)
        await audit(tx, access.principal, "model.add_price", "model", model_id, after=out)
    return out


async def delete_price(ctx: AdminContext, access: Access, model_id: str, price_id: str) -> None:
    access.check(None, f"model {model_id!r}")
    async with ctx.db.transaction("deleting a price") as tx:
        removed = await repo.delete_price(tx, model_id, price_id)
        await audit(tx, access.principal, "model.delete_price", "model", model_id,
                    before=c.PriceOut.of(removed, "scheduled"))
