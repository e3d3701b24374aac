"""Models' canary splits and fallback chains in the store: checked on write, kept consistent.

A model's ``routing`` names deployments and models by name (as the platform file does), so
the repository keeps the names good: a model is written only if everything its routing
names exists and the chains form no cycle (the platform file's own checks,
``config.spec.routes``, over the stored models plus this one), and a deployment or model
that some model's routing names can be neither deleted nor renamed (``Conflict`` naming
those models). Called under the catalog lock, like every catalog write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.config.spec.models import ModelSpec
from inferenceops.config.spec.routes import CanarySpec, FallbackSpec, Routed, route_problems
from inferenceops.store.errors import Conflict, Invalid
from inferenceops.store.tables_catalog import Deployment, Model


@dataclass(frozen=True, slots=True)
class _Stored:
    name: str
    deployment: str
    type: str
    canary: Sequence[CanarySpec]
    fallbacks: Sequence[FallbackSpec]


async def _stored(session: AsyncSession, except_id: str | None) -> list[_Stored]:
    stmt = select(Model.id, Model.name, Model.type, Model.routing, Deployment.name).join(
        Deployment, Deployment.id == Model.deployment_id)
    out = []
    for model_id, name, kind, routing, deployment in await session.execute(stmt):
        if model_id == except_id:
            continue
        routing = routing or {}
        out.append(_Stored(name, deployment, kind,
                           [CanarySpec.model_validate(c) for c in routing.get("canary", ())],
                           [FallbackSpec.model_validate(f) for f in routing.get("fallbacks", ())]))
    return out


async def check_routes(session: AsyncSession, spec: ModelSpec, model_id: str | None) -> None:
    """``Invalid`` naming the field, unless what ``spec``'s routing names exists (and a chain
    of models through it does not come back to where it started)."""
    if not spec.canary and not spec.fallbacks:
        return
    models: list[Routed] = [*await _stored(session, model_id), spec]
    deployments = list((await session.execute(select(Deployment.name))).scalars())
    own = len(models) - 1
    for loc, message in route_problems(models, deployments):
        if loc[1] == own:
            raise Invalid(message, field=".".join(str(part) for part in loc[2:]))


async def routed_through(session: AsyncSession, *, deployment: str | None = None,
                         model: str | None = None) -> list[str]:
    """The models whose canary or fallbacks name ``deployment`` (or fall back to ``model``)."""
    found = []
    for other in await _stored(session, None):
        if deployment is not None:
            names = {c.deployment for c in other.canary} | {
                f.deployment for f in other.fallbacks if f.deployment is not None}
        else:
            names = {f.model for f in other.fallbacks if f.model is not None}
        if (deployment if deployment is not None else model) in names:
            found.append(other.name)
    return sorted(found)


async def refuse_if_routed(session: AsyncSession, what: str, *, deployment: str | None = None,
                           model: str | None = None) -> None:
    """``Conflict`` if a model's routing names this deployment or model (``what``: the verb)."""
    users = await routed_through(session, deployment=deployment, model=model)
    if users:
        named = f"deployment {deployment!r}" if deployment is not None else f"model {model!r}"
        raise Conflict(f"cannot {what} {named}: the canary or fallbacks of model(s) "
                       f"{', '.join(repr(u) for u in users)} name it; change them first")
