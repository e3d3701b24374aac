"""The served catalog, built from the store's rows: what every worker's snapshot serves.

The store holds providers, deployments and models (put there by the admin API
or by ``inferenceops apply`` / ``serve --config``); this turns one read of them
into the same ``Platform`` the platform file's own path builds — through the
same specs and builder, so both paths mean the same thing. The file's
admission rules (currency, teams, limits, budgets) are added from the file.

A stored row that no longer makes sense (e.g. a simulator profile missing on
this machine) is left out with an error in the log, together with the models
that need it — one bad row never takes the whole catalog down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from inferenceops.admission.config import StaticPolicy
from inferenceops.config.spec import Platform, PlatformSpec, build_platform
from inferenceops.config.spec.adapters import AdapterSpec
from inferenceops.config.spec.deployments import DeploymentSpec, ProviderSpec
from inferenceops.config.spec.models import ModelSpec
from inferenceops.guardrails.spec import GuardrailsSpec
from inferenceops.metering.prices import model_prices
from inferenceops.store.errors import StoreError
from inferenceops.store.records import CatalogData
from inferenceops.store.repo.adapters import adapter_spec
from inferenceops.store.repo.catalog_specs import deployment_spec, model_spec, price_entry, provider_spec

log = logging.getLogger("inferenceops.control")
R = TypeVar("R")
S = TypeVar("S", ProviderSpec, DeploymentSpec, ModelSpec, AdapterSpec)


def platform_from_store(data: CatalogData, static: StaticPolicy, *, loopback_base_url: str,
                        environ: Mapping[str, str],
                        drained: Mapping[str, frozenset[str]] | None = None) -> Platform:
    """The served platform; ``drained``: replica ids operators drained, by deployment name."""
    providers = _usable(data.providers, provider_spec, "provider", lambda _: None, set())
    deployments = _usable(data.deployments, deployment_spec, "deployment",
                          lambda d: d.provider, {p.name for p in providers})
    models = _usable(data.models, model_spec, "model", lambda m: m.deployment,
                     {d.name for d in deployments})
    adapters = _usable(data.adapters, adapter_spec, "adapter", lambda a: a.base_model,
                       {m.name for m in models})
    spec = PlatformSpec.model_construct(  # every part was validated on its own
        currency=static.currency, providers=providers, deployments=deployments, models=models,
        adapters=adapters,
        teams=list(static.teams), limits=list(static.limits), budgets=list(static.budgets),
        guardrails=static.guardrails or GuardrailsSpec())  # the platform file's, as it is
    keys = {row.name: row.api_key for row in data.providers if row.api_key}
    created = {row.name: int(row.created_at.timestamp()) for row in data.models}
    created.update((row.name, int(row.created_at.timestamp())) for row in data.adapters)
    # Whole schedules, history included: a request that started before a change is priced by
    # the entry in force then, whichever snapshot settles it.
    served = {m.name for m in models}
    schedules = {row.name: model_prices(price_entry(p) for p in row.prices)
                 for row in data.models if row.name in served and row.prices}
    return build_platform(spec, loopback_base_url=loopback_base_url, environ=environ,
                          source="the store", provider_keys=keys, created=created,
                          prices=schedules, drained=drained)


def _usable(rows: Iterable[R], convert: Callable[[R], S], what: str,
            needs: Callable[[S], str | None], usable: set[str]) -> list[S]:
    """The rows as specs, less those that cannot be served or need something that cannot."""
    specs: list[S] = []
    for row in rows:
        try:
            spec = convert(row)
        except StoreError as exc:
            log.error("stored %s %r left out: %s", what, getattr(row, "name", "?"), exc)
            continue
        needed = needs(spec)
        if needed is not None and needed not in usable:
            log.error("%s %r left out: it needs %r, which cannot be served", what,
                      spec.name, needed)
            continue
        specs.append(spec)
    return specs
