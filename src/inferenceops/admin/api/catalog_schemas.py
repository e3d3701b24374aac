"""Request and response bodies of the catalog routes (providers, deployments, models, adapters).
No I/O.

A create body *is* the platform YAML's spec as JSON (``config.spec.ProviderSpec``, ``DeploymentSpec``,
``ModelSpec``): the same fields, defaults and rules, so a block of ``platform.yaml`` can be
POSTed as it is. References are by name, as in the YAML (a deployment's ``provider``, a
model's ``deployment``). A ``*Patch`` body has the same fields, all optional: only those sent
change (``null`` sets a field to null), and the result is validated as a whole spec by the
store — so a PATCH is refused for exactly what the YAML would refuse.

Responses are the spec's JSON plus the row's ``id``, the referenced row's id, ``managed_by``
and timestamps: what GET returns can be edited and sent back. A model's ``price`` and ``prices``
are what it charges from now on (``store.repo.model_spec``); ``PriceOut`` is one entry of its
whole schedule, history included, and ``PriceCreate`` schedules one. A provider's API key is
write-only: accepted by ``ProviderCreate`` and ``ProviderKeySet`` (a ``SecretStr``, so it is
never in a ``repr`` or a log), never returned — responses say ``has_api_key``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from inferenceops.config.spec.adapters import AdapterName, AdapterSpec
from inferenceops.config.spec.base import Name
from inferenceops.config.spec.deployments import (
    DeploymentSpec,
    ProviderSpec,
    QueueSpec,
    ReplicaSpec,
    TimeoutsSpec,
    Url,
)
from inferenceops.config.spec.models import ModelSpec, ScheduledPriceSpec
from inferenceops.config.spec.routes import MAX_CANARIES, MAX_FALLBACKS, CanarySpec, FallbackSpec
from inferenceops.metering.gpu_costs import GpuCostSpec
from inferenceops.metering.prices import Instant, PriceSpec
from inferenceops.store.records import (
    AdapterRecord,
    DeploymentRecord,
    ModelRecord,
    PriceRecord,
    ProviderRecord,
)
from inferenceops.store.repo import adapter_spec, deployment_spec, model_spec
from inferenceops.store.repo.catalog_providers import MAX_API_KEY_CHARS
from inferenceops.store.repo.catalog_specs import price_entry

API_KEY_DOC = "The provider's API key. Write-only: stored encrypted, never returned."


class _Patch(BaseModel):
    """Only the fields sent change; the store validates the result as a whole spec."""

    model_config = ConfigDict(extra="forbid")

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


# ---- providers --------------------------------------------------------------------------------

class ProviderCreate(ProviderSpec):
    """A provider as in the platform YAML, plus (optionally) its API key."""

    api_key: SecretStr | None = Field(None, min_length=1, max_length=MAX_API_KEY_CHARS,
                                      description=API_KEY_DOC)

    def spec(self) -> ProviderSpec:
        return ProviderSpec.model_validate(self.model_dump(exclude={"api_key"}))


class ProviderPatch(_Patch):
    name: Name | None = None
    base_url: Url | None = None
    dialect: Literal["openai"] | None = None
    api_key_env: str | None = None


class ProviderKeySet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr = Field(min_length=1, max_length=MAX_API_KEY_CHARS, description=API_KEY_DOC)


class ProviderOut(BaseModel):
    id: str
    name: str
    base_url: str
    dialect: str
    api_key_env: str | None
    has_api_key: bool = Field(description="Whether an API key is stored (it is never returned)")
    managed_by: str | None = Field(description="null: the admin API; 'config': a platform file (apply)")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: ProviderRecord) -> ProviderOut:
        return cls(id=r.id, name=r.name, base_url=r.base_url, dialect=r.dialect,
                   api_key_env=r.api_key_env, has_api_key=r.has_api_key, managed_by=r.managed_by,
                   created_at=r.created_at, updated_at=r.updated_at)


# ---- deployments ------------------------------------------------------------------------------

DeploymentCreate = DeploymentSpec


class DeploymentPatch(_Patch):
    name: Name | None = None
    engine: Literal["simulator", "openai"] | None = None
    served_model: Name | None = None
    provider: Name | None = None
    profile: str | None = None
    replicas: int | list[ReplicaSpec] | None = None
    seed: int | None = None
    api_key_env: str | None = None
    timeouts: TimeoutsSpec | None = None
    max_connections: int | None = None
    capacity: int | None = None
    queue: QueueSpec | None = None
    routing: Literal["least_outstanding", "round_robin", "engine_load", "prefix_affinity",
                     "session_affinity"] | None = None
    scheduling_policy: Literal["fcfs", "priority"] | None = None
    gpu_cost: GpuCostSpec | None = None
    max_loras: int | None = None


class DeploymentOut(DeploymentSpec):
    """The deployment's spec, and the row's bookkeeping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    provider_id: str | None
    managed_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: DeploymentRecord) -> DeploymentOut:
        return cls(**deployment_spec(r).model_dump(), id=r.id, provider_id=r.provider_id,
                   managed_by=r.managed_by, created_at=r.created_at, updated_at=r.updated_at)


# ---- models -----------------------------------------------------------------------------------

ModelCreate = ModelSpec


class ModelPatch(_Patch):
    name: Name | None = None
    deployment: Name | None = None
    aliases: list[Name] | None = None
    type: Literal["chat", "embedding"] | None = None
    price: PriceSpec | None = Field(None, description="the model's own price from now on (the one "
                                    "in force until now stays in its history)")
    prices: list[ScheduledPriceSpec] | None = Field(
        None, max_length=1000, description="replaces the prices to come and the deployments' "
        "prices (those that have started stay in the history)")
    max_output_tokens: int | None = None
    canary: list[CanarySpec] | None = Field(None, max_length=MAX_CANARIES)
    fallbacks: list[FallbackSpec] | None = Field(None, max_length=MAX_FALLBACKS)


class ModelOut(ModelSpec):
    """The model's spec (prices as decimal text), and the row's bookkeeping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    deployment_id: str
    managed_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: ModelRecord) -> ModelOut:
        return cls(**model_spec(r).model_dump(), id=r.id, deployment_id=r.deployment_id,
                   managed_by=r.managed_by, created_at=r.created_at, updated_at=r.updated_at)


# ---- a model's prices -------------------------------------------------------------------------

class PriceCreate(PriceSpec):
    """A price for the model, or only for the requests one deployment serves, from a time on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    effective_from: Instant | None = Field(
        None, description="when it starts: an RFC 3339 time with its offset "
        "(2026-12-10T00:00:00Z) or a date (midnight UTC); now when left out, never in the past")
    deployment: Name | None = Field(None, description="only for requests this deployment serves")


PriceState = Literal["history", "in_force", "scheduled"]


class PriceOut(PriceSpec):
    """One entry of a model's price schedule (amounts as decimal text per million tokens)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    model_id: str
    deployment: str | None = Field(description="null: the model's own price")
    deployment_id: str | None
    effective_from: datetime | None = Field(description="null: from the beginning")
    state: PriceState = Field(description="history: started and replaced by a later one; "
                              "in_force: what a request of its scope pays now; scheduled: to come")
    created_at: datetime

    @classmethod
    def of(cls, r: PriceRecord, state: PriceState) -> PriceOut:
        return cls(**price_entry(r).price.model_dump(), id=r.id, model_id=r.model_id,
                   deployment=r.deployment, deployment_id=r.deployment_id,
                   effective_from=r.effective_from, state=state, created_at=r.created_at)

    @classmethod
    def schedule(cls, model: ModelRecord, now: datetime) -> list[PriceOut]:
        """The model's whole schedule, each entry with its state at ``now``."""
        in_force: dict[str | None, PriceRecord] = {}
        for p in model.prices:  # ordered by scope, then start: the last started one wins
            if p.effective_from is None or p.effective_from <= now:
                in_force[p.deployment] = p
        return [cls.of(p, "in_force" if in_force.get(p.deployment) is p else
                       "history" if p.effective_from is None or p.effective_from <= now
                       else "scheduled") for p in model.prices]


# ---- replicas: drain, and this process's view of their health ---------------------------------

class ReplicaOut(BaseModel):
    """One replica: drained (the store's, every process) and its health in the process that
    answered (``health`` None when that process does not serve the deployment yet)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    drained: bool
    health: dict[str, Any] | None = Field(
        None, description="this process's view: state (closed, open, half_open), weight, "
        "consecutive_failures, open_reason, retry_in_s, streams_in_flight, last_failure, "
        "last_probe_ok, failures (by kind)")


class ReplicasOut(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    deployment: str
    deployment_id: str
    replicas: list[ReplicaOut]


class DrainedOut(BaseModel):
    """What a drain or undrain audit entry records: the replica, and the drained list."""

    replica: str
    drained: list[str]


# ---- adapters ---------------------------------------------------------------------------------

AdapterCreate = AdapterSpec


class AdapterPatch(_Patch):
    name: AdapterName | None = None
    base_model: AdapterName | None = None
    source: str | None = None
    description: str | None = None


class AdapterOut(AdapterSpec):
    """The adapter's spec, and the row's bookkeeping (its base model's id too)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    base_model_id: str
    managed_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: AdapterRecord) -> AdapterOut:
        return cls(**adapter_spec(r).model_dump(), id=r.id, base_model_id=r.model_id,
                   managed_by=r.managed_by, created_at=r.created_at, updated_at=r.updated_at)
