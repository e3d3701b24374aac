"""Catalog rows ↔ records ↔ the platform YAML's specs (``config.spec.ProviderSpec`` and friends).

The specs are the one definition of a provider, a deployment and a model: data is validated by
building the spec (so the store accepts exactly what the YAML accepts), stored column by column,
and every record converts back to an equal spec (``provider_spec``, ``deployment_spec``,
``model_spec``). A spec's ``ValidationError`` becomes ``Invalid`` naming the field
(``invalid_from``). Pure conversion: no queries here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from inferenceops.config.spec.deployments import DeploymentSpec, ProviderSpec
from inferenceops.config.spec.models import ModelSpec
from inferenceops.metering.prices import Entry, PriceSpec, as_of
from inferenceops.store.errors import Invalid
from inferenceops.store.records import DeploymentRecord, ModelRecord, PriceRecord, ProviderRecord
from inferenceops.store.tables import utcnow
from inferenceops.store.tables_catalog import Deployment, Model, ModelPrice, Provider

S = TypeVar("S", bound=BaseModel)
MAX_BIGINT = 2**63 - 1
#: Union members pydantic puts in an error's location (``replicas.int``); not fields.
_TYPE_TAGS = frozenset({"int", "float", "str", "bool", "None"})
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: A rule over several fields (a model validator) reports at the root, and names its field in
#: quotes: "a simulator deployment needs 'profile:'" — the first quoted field is the one.
_QUOTED = re.compile(r"'([a-z_][a-z0-9_]*)")


def error_field(error: Mapping[str, Any], fields: Collection[str] | None = None) -> str | None:
    """The dotted field one pydantic error is about (``aliases.0``, ``timeouts.connect_s``).

    Union tags in the location are skipped; an error at the root (a rule over several fields)
    is about the first field its message quotes (one of ``fields``, when given).
    """
    path = [str(p) for p in error.get("loc", ())
            if isinstance(p, int) or (_IDENTIFIER.match(str(p)) and p not in _TYPE_TAGS)]
    if path:
        return ".".join(path)
    return next((m for m in _QUOTED.findall(str(error.get("msg", "")))
                 if fields is None or m in fields), None)


def first_field(errors: Sequence[Mapping[str, Any]], fields: Collection[str] | None = None) -> str | None:
    """The field of the first error — its deepest location: a union field (``replicas``) reports
    once per alternative, and only the alternative that matched says which item is wrong."""
    found = [error_field(e, fields) for e in errors]
    if not found or found[0] is None:
        return None
    top = found[0].split(".")[0]
    return max((f for f in found if f is not None and f.split(".")[0] == top), key=len)


def invalid_from(kind: type[BaseModel], error: ValidationError, what: str) -> Invalid:
    """``Invalid`` for a spec's validation failure: every problem in the message, the first's field."""
    problems = error.errors()
    parts = []
    for problem in problems:
        message = re.sub(r"^Value error, ", "", problem["msg"])
        where = error_field(problem, kind.model_fields)
        parts.append(f"{where}: {message}" if where else message)
    return Invalid(f"{what}: {'; '.join(parts)}", field=first_field(problems, kind.model_fields))


def validated(kind: type[S], data: S | Mapping[str, Any], what: str) -> S:
    """``data`` as a ``kind`` spec (a spec passes through), or ``Invalid`` naming the field."""
    if isinstance(data, kind):
        return data
    if not isinstance(data, Mapping):
        raise Invalid(f"{what}: expected an object with the fields of {kind.__name__}")
    try:
        return kind.model_validate(dict(data))
    except ValidationError as error:
        raise invalid_from(kind, error, what) from None


# ---- specs → columns --------------------------------------------------------------------------

def provider_columns(spec: ProviderSpec) -> dict[str, Any]:
    return {"name": spec.name, "base_url": spec.base_url, "dialect": spec.dialect,
            "api_key_env": spec.api_key_env}


def storable_deployment(spec: DeploymentSpec) -> DeploymentSpec:
    """The spec, if its values fit the columns (the YAML's ``seed`` is unbounded; BIGINT is not)."""
    if not -MAX_BIGINT - 1 <= spec.seed <= MAX_BIGINT:
        raise Invalid(f"deployment {spec.name!r}: seed must fit in 64 bits, not {spec.seed}",
                      field="seed")
    return spec


def deployment_columns(spec: DeploymentSpec, provider_id: str | None) -> dict[str, Any]:
    replicas = [r.url for r in spec.replicas] if isinstance(spec.replicas, list) else spec.replicas
    return {"name": spec.name, "engine": spec.engine, "served_model": spec.served_model,
            "provider_id": provider_id, "profile": spec.profile, "replicas": replicas,
            "seed": spec.seed, "api_key_env": spec.api_key_env,
            "timeouts": spec.timeouts.model_dump(mode="json"),
            "max_connections": spec.max_connections, "capacity": spec.capacity,
            "queue": spec.queue.model_dump(mode="json"), "routing": spec.routing,
            "scheduling_policy": spec.scheduling_policy,
            "gpu_cost": None if spec.gpu_cost is None else spec.gpu_cost.model_dump(mode="json"),
            "max_loras": spec.max_loras}


def model_columns(spec: ModelSpec, deployment_id: str) -> dict[str, Any]:
    """The model's own columns (its prices are rows of their own: ``price_columns``)."""
    routing = None
    if spec.canary or spec.fallbacks:
        routing = {"canary": [c.model_dump() for c in spec.canary],
                   "fallbacks": [f.model_dump(exclude_none=True) for f in spec.fallbacks]}
    return {"name": spec.name, "deployment_id": deployment_id, "type": spec.type,
            "aliases": list(spec.aliases), "max_output_tokens": spec.max_output_tokens,
            "routing": routing}


def price_columns(entry: Entry, deployment_id: str | None) -> dict[str, Any]:
    """One schedule entry's columns: its amounts as the decimal text they were written in."""
    amounts = entry.price.model_dump(mode="json")
    return {"deployment_id": deployment_id, "effective_from": entry.effective_from,
            "input_per_million": amounts["input_per_million"],
            "output_per_million": amounts["output_per_million"],
            "cached_input_per_million": amounts["cached_input_per_million"],
            "batch_discount_percent": amounts["batch_discount_percent"]}


# ---- rows → records ---------------------------------------------------------------------------

def provider_record(row: Provider, api_key: str | None = None) -> ProviderRecord:
    return ProviderRecord(row.id, row.name, row.base_url, row.dialect, row.api_key_env,
                          row.credentials_encrypted is not None, row.managed_by, row.created_at,
                          row.updated_at, api_key)


def deployment_record(row: Deployment, provider: str | None) -> DeploymentRecord:
    replicas = tuple(row.replicas) if isinstance(row.replicas, list) else row.replicas
    return DeploymentRecord(
        row.id, row.name, row.engine, row.served_model, row.provider_id, provider, row.profile,
        replicas, row.seed, row.api_key_env, dict(row.timeouts), row.max_connections, row.capacity,
        dict(row.queue), row.routing, row.managed_by, row.created_at, row.updated_at,
        None if row.gpu_cost is None else dict(row.gpu_cost), row.scheduling_policy,
        row.max_loras)


def price_record(row: ModelPrice, deployment: str | None) -> PriceRecord:
    return PriceRecord(row.id, row.model_id, row.deployment_id, deployment, row.effective_from,
                       row.input_per_million, row.output_per_million, row.cached_input_per_million,
                       row.batch_discount_percent, row.created_at)


def schedule_order(record: PriceRecord) -> tuple[bool, str, bool, datetime]:
    """The model's own prices first, then by deployment; each from the beginning, then by start."""
    return (record.deployment is not None, record.deployment or "", record.effective_from is not None,
            record.effective_from or record.created_at)


def model_record(row: Model, deployment: str, prices: Iterable[PriceRecord] = ()) -> ModelRecord:
    routing = row.routing or {}
    return ModelRecord(row.id, row.name, row.deployment_id, deployment, row.type, tuple(row.aliases),
                       tuple(sorted(prices, key=schedule_order)), row.max_output_tokens,
                       row.managed_by, row.created_at, row.updated_at,
                       tuple(routing.get("canary", ())), tuple(routing.get("fallbacks", ())))


# ---- records → specs --------------------------------------------------------------------------

def provider_spec(r: ProviderRecord) -> ProviderSpec:
    """The spec a stored provider is (its key is not part of it: the YAML names an env var)."""
    return validated(ProviderSpec, {"name": r.name, "base_url": r.base_url, "dialect": r.dialect,
                                    "api_key_env": r.api_key_env}, f"stored provider {r.name!r}")


def deployment_spec(r: DeploymentRecord) -> DeploymentSpec:
    replicas = [{"url": u} for u in r.replicas] if isinstance(r.replicas, tuple) else r.replicas
    return validated(DeploymentSpec, {
        "name": r.name, "engine": r.engine, "served_model": r.served_model, "provider": r.provider,
        "profile": r.profile, "replicas": replicas, "seed": r.seed, "api_key_env": r.api_key_env,
        "timeouts": r.timeouts, "max_connections": r.max_connections, "capacity": r.capacity,
        "queue": r.queue, "routing": r.routing, "scheduling_policy": r.scheduling_policy,
        "gpu_cost": r.gpu_cost, "max_loras": r.max_loras},
        f"stored deployment {r.name!r}")


def price_entry(r: PriceRecord) -> Entry:
    """A stored entry of a schedule, its amounts validated as a ``PriceSpec``."""
    amounts = validated(PriceSpec, {
        "input_per_million": r.input_per_million, "output_per_million": r.output_per_million,
        "cached_input_per_million": r.cached_input_per_million,
        "batch_discount_percent": r.batch_discount_percent}, f"stored price {r.id!r}")
    return Entry(r.deployment, r.effective_from, amounts)


def model_spec(r: ModelRecord, now: datetime | None = None) -> ModelSpec:
    """The spec a stored model is *as of* ``now`` (default: this instant): ``price`` is its own
    price in force, ``prices`` the deployments' prices in force and every change to come — what
    it charges from now on (its whole history: ``r.prices``)."""
    price, shown = as_of([price_entry(p) for p in r.prices], now or utcnow())
    return validated(ModelSpec, {
        "name": r.name, "deployment": r.deployment, "aliases": list(r.aliases), "type": r.type,
        "price": price, "prices": [scheduled(e) for e in shown],
        "max_output_tokens": r.max_output_tokens, "canary": list(r.canary),
        "fallbacks": list(r.fallbacks)}, f"stored model {r.name!r}")


def scheduled(entry: Entry) -> dict[str, Any]:
    """An entry as the fields of ``config.spec.ScheduledPriceSpec``."""
    return {**entry.price.model_dump(), "effective_from": entry.effective_from,
            "deployment": entry.deployment}
