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
from collections.abc import Mapping

from inferenceops.admission.config import StaticPolicy
from inferenceops.config import (
    DeploymentSpec,
    ModelSpec,
    Platform,
    PlatformSpec,
    ProviderSpec,
    build_platform,
)
from inferenceops.store.errors import StoreError
from inferenceops.store.records import CatalogData
from inferenceops.store.repo.catalog_specs import deployment_spec, model_spec, provider_spec

log = logging.getLogger("inferenceops.control")


def platform_from_store(data: CatalogData, static: StaticPolicy, *, loopback_base_url: str,
                        environ: Mapping[str, str]) -> Platform:
    providers: list[ProviderSpec] = []
    for row in data.providers:
        spec = _spec(provider_spec, row, "provider")
        if spec is not None:
            providers.append(spec)
    known_providers = {p.name for p in providers}
    deployments: list[DeploymentSpec] = []
    for row in data.deployments:
        spec = _spec(deployment_spec, row, "deployment")
        if spec is None:
            continue
        if spec.provider is not None and spec.provider not in known_providers:
            log.error("deployment %r left out: its provider %r is unusable", spec.name, spec.provider)
            continue
        deployments.append(spec)
    known_deployments = {d.name for d in deployments}
    models: list[ModelSpec] = []
    for row in data.models:
        spec = _spec(model_spec, row, "model")
        if spec is None:
            continue
        if spec.deployment not in known_deployments:
            log.error("model %r left out: its deployment %r is unusable", spec.name, spec.deployment)
            continue
        models.append(spec)
    spec = PlatformSpec.model_construct(  # every part was validated on its own
        currency=static.currency, providers=providers, deployments=deployments, models=models,
        teams=list(static.teams), limits=list(static.limits), budgets=list(static.budgets))
    keys = {row.name: row.api_key for row in data.providers if row.api_key}
    created = {row.name: int(row.created_at.timestamp()) for row in data.models}
    return build_platform(spec, loopback_base_url=loopback_base_url, environ=environ,
                          source="the store", provider_keys=keys, created=created)


def _spec(convert, row, what: str):  # type: ignore[no-untyped-def]
    try:
        return convert(row)
    except StoreError as exc:
        log.error("stored %s %r left out: %s", what, row.name, exc)
        return None
