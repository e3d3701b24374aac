"""Config as code: make the stored catalog match a platform file, idempotently, all or nothing.

``plan_apply`` compares the file's providers, deployments, models and adapters with the
store's and lists what must change; ``apply_platform`` makes exactly those
changes in one transaction (so a failure leaves nothing half-applied), each
recorded in the audit log. Applying the same file twice changes nothing the
second time. ``--dry-run`` shows the plan and writes nothing.

Ownership: rows the file creates are marked ``managed_by = "config"``. A row of
the same name made through the admin API is *adopted* (updated to the file's
values and marked). A file-managed row that is no longer in the file is
deleted; rows made through the admin API that the file does not name are
left alone. The file's admission rules (currency, teams, limits, budgets)
are not stored: the serving process reads them from the file itself.

A model's prices are compared and synced by what they charge from the moment of the
apply on (``metering.prices``): a changed ``price:`` becomes a price change starting
then, scheduled ``prices:`` are matched one for one, and the history stays.

Order inside the transaction keeps every intermediate state valid: providers
and deployments are created or updated before the models that use them, and
models before the adapters on them; adapters leave before the models, models
before the deployments and providers they used; a model whose
aliases change drops them first, so names can move between models.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel

from inferenceops.config.spec import PlatformSpec
from inferenceops.config.spec.models import ModelSpec
from inferenceops.metering.prices import view
from inferenceops.store import Database, repo
from inferenceops.store.records import (
    AdapterRecord,
    CatalogData,
    DeploymentRecord,
    ModelRecord,
    ProviderRecord,
)
from inferenceops.store.repo.adapters import adapter_spec
from inferenceops.store.repo.catalog_specs import deployment_spec, model_spec, provider_spec

MANAGED_BY = "config"
Kind = Literal["provider", "deployment", "model", "adapter"]
Action = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class Change:
    action: Action
    kind: Kind
    name: str
    fields: tuple[str, ...] = ()  # what an update changes
    adopt: bool = False  # an admin-API row the file now manages

    def line(self) -> str:
        mark = {"create": "+", "update": "~", "delete": "-"}[self.action]
        detail = f" ({', '.join(self.fields)})" if self.fields else ""
        adopted = " [adopted from the admin API]" if self.adopt else ""
        return f"{mark} {self.kind} {self.name}{detail}{adopted}"

    def as_json(self) -> dict[str, Any]:
        return {"action": self.action, "kind": self.kind, "name": self.name,
                "fields": list(self.fields), "adopt": self.adopt}


@dataclass(frozen=True, slots=True)
class ApplyPlan:
    changes: tuple[Change, ...]
    dry_run: bool

    def text(self) -> str:
        if not self.changes:
            return "the store already matches the file; nothing to change"
        verb = "would change" if self.dry_run else "changed"
        return "\n".join([f"{verb} {len(self.changes)} object(s):",
                          *(f"  {c.line()}" for c in self.changes)])


def plan_apply(spec: PlatformSpec, current: CatalogData, now: datetime | None = None) -> ApplyPlan:
    """What applying ``spec`` at ``now`` would change in ``current`` (pure; ``dry_run`` set).

    A model's prices are compared by what they charge from ``now`` on (``metering.prices.view``):
    the file's ``price`` from the beginning and the store's price in force since some change
    are the same when they are the same price; what has started is history, not a difference.
    """
    now = now or datetime.now(UTC)

    def model_fields(have: BaseModel, want: BaseModel) -> tuple[str, ...]:
        assert isinstance(have, ModelSpec) and isinstance(want, ModelSpec)
        others = _changed_fields(have.model_dump(exclude=_PRICES), want.model_dump(exclude=_PRICES))
        prices = view(want.price_entries(), now).changed(view(have.price_entries(), now))
        return tuple(sorted(others + prices))

    changes: list[Change] = []
    for kind, wanted, stored, compare in (
        ("provider", spec.providers, {r.name: (provider_spec(r), r.managed_by) for r in current.providers},
         _fields),
        ("deployment", spec.deployments,
         {r.name: (deployment_spec(r), r.managed_by) for r in current.deployments}, _fields),
        ("model", spec.models, {r.name: (model_spec(r, now), r.managed_by) for r in current.models},
         model_fields),
        ("adapter", spec.adapters,
         {r.name: (adapter_spec(r), r.managed_by) for r in current.adapters}, _fields),
    ):
        changes += _diff(kind, wanted, stored, compare)  # type: ignore[arg-type]
    return ApplyPlan(tuple(changes), True)


_PRICES = {"price", "prices"}


def _fields(have: BaseModel, want: BaseModel) -> tuple[str, ...]:
    return _changed_fields(have.model_dump(), want.model_dump())


def _diff(kind: Kind, wanted: Iterable[BaseModel], stored: Mapping[str, tuple[BaseModel, str | None]],
          compare: Callable[[BaseModel, BaseModel], tuple[str, ...]]) -> list[Change]:
    changes: list[Change] = []
    names = set()
    for spec in wanted:
        name = spec.name  # type: ignore[attr-defined]
        names.add(name)
        if name not in stored:
            changes.append(Change("create", kind, name))
            continue
        have, managed_by = stored[name]
        fields = compare(have, spec)
        if fields or managed_by != MANAGED_BY:
            changes.append(Change("update", kind, name, fields, adopt=managed_by != MANAGED_BY))
    changes += [Change("delete", kind, name) for name, (_, managed_by) in sorted(stored.items())
                if name not in names and managed_by == MANAGED_BY]
    return changes


def _changed_fields(have: Mapping[str, Any], want: Mapping[str, Any], prefix: str = "") -> tuple[str, ...]:
    out: list[str] = []
    for key in sorted(set(have) | set(want)):
        a, b = have.get(key), want.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_fields(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return tuple(out)


async def apply_platform(db: Database, spec: PlatformSpec, *, dry_run: bool = False,
                         actor: str = "system:config", source: str | None = None) -> ApplyPlan:
    """Plan, and unless ``dry_run`` carry out, in one transaction under the catalog lock."""
    now = datetime.now(UTC)
    async with db.transaction("applying the platform file") as tx:
        await repo.lock_catalog(tx)
        current = await repo.load_catalog(tx)
        plan = plan_apply(spec, current, now)
        if dry_run or not plan.changes:
            return plan
        await _carry_out(tx, spec, current, plan, actor, source, now)
    return ApplyPlan(plan.changes, False)


async def _carry_out(tx: Any, spec: PlatformSpec, current: CatalogData, plan: ApplyPlan,
                     actor: str, source: str | None, now: datetime) -> None:
    wanted: dict[tuple[str, str], BaseModel] = {}
    for kind, specs in (("provider", spec.providers), ("deployment", spec.deployments),
                        ("model", spec.models), ("adapter", spec.adapters)):
        wanted.update({(kind, s.name): s for s in specs})

    def of(kind: Kind, action: Action) -> list[Change]:
        return [c for c in plan.changes if c.kind == kind and c.action == action]

    async def note(action: str, kind: str, target_id: str, before: Any = None, after: Any = None) -> None:
        await repo.append_audit(tx, actor=actor, action=f"{kind}.{action}", target_type=kind,
                                target_id=target_id, before=_plain(before), after=_plain(after),
                                source=source)

    ids: dict[tuple[str, str], ProviderRecord | DeploymentRecord | ModelRecord | AdapterRecord] = {
        ("provider", r.name): r for r in current.providers}
    ids.update({("adapter", r.name): r for r in current.adapters})
    ids.update({("deployment", r.name): r for r in current.deployments})
    ids.update({("model", r.name): r for r in current.models})
    # One signature per role across the three kinds; the repositories check their own arguments.
    creators: dict[str, Callable[..., Awaitable[Any]]] = {
        "provider": repo.create_provider, "deployment": repo.create_deployment,
        "model": repo.create_model, "adapter": repo.create_adapter}
    updaters: dict[str, Callable[..., Awaitable[Any]]] = {
        "provider": repo.update_provider, "deployment": repo.update_deployment,
        "model": partial(repo.update_model, now=now), "adapter": repo.update_adapter}
    deleters: dict[str, Callable[..., Awaitable[Any]]] = {
        "provider": repo.delete_provider, "deployment": repo.delete_deployment,
        "model": repo.delete_model, "adapter": repo.delete_adapter}

    async def upsert(kind: Kind) -> None:
        for change in of(kind, "update"):
            before = ids[kind, change.name]
            after = await updaters[kind](tx, before.id, wanted[kind, change.name].model_dump(),
                                         managed_by=MANAGED_BY)
            await note("update", kind, before.id, before, after)
        for change in of(kind, "create"):
            after = await creators[kind](tx, wanted[kind, change.name], managed_by=MANAGED_BY)
            await note("create", kind, after.id, after=after)

    async def remove(kind: Kind) -> None:
        for change in of(kind, "delete"):
            before = ids[kind, change.name]
            await deleters[kind](tx, before.id)
            await note("delete", kind, before.id, before=before)

    await remove("adapter")  # before the models they name
    await upsert("provider")
    await upsert("deployment")
    await remove("model")
    for change in of("model", "update"):  # free names that may move to another model
        if "aliases" in change.fields:
            await repo.update_model(tx, ids["model", change.name].id, {"aliases": []})
    await upsert("model")
    await upsert("adapter")  # after the models they name
    await remove("deployment")
    await remove("provider")


def _plain(record: Any) -> dict[str, Any] | None:
    """A record as audit JSON (providers' decrypted keys are never loaded here)."""
    if record is None:
        return None
    if isinstance(record, BaseModel):
        return record.model_dump(mode="json")
    fields = getattr(record, "__dataclass_fields__", {})
    return {name: getattr(record, name) for name in fields if name != "api_key"}
