"""Routes: ``/deployments``. Thin: parse → authorize → service → schema.

Bodies are the platform YAML's deployment spec as JSON; ``provider`` names a provider.
``/deployments/{id}/replicas`` shows which replicas are drained and their health *in the
process that answers*; ``…/replicas/{replica}/drain`` and ``/undrain`` change it for every
process (audited).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response

from inferenceops.admin.api import catalog_schemas as c
from inferenceops.admin.api import catalog_service as service
from inferenceops.admin.api import schemas as s
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, require

router = APIRouter(tags=["deployments"])
Read = Annotated[Access, Depends(require("catalog:read"))]
Write = Annotated[Access, Depends(require("catalog:write"))]


@router.get("/deployments", response_model=s.Page[c.DeploymentOut])
async def list_deployments(
    ctx: Context, access: Read, name: str | None = None,
    engine: Literal["simulator", "openai"] | None = None, provider: str | None = None,
    managed_by: str | None = None, limit: Limit = DEFAULT_LIMIT, after: After = None,
) -> s.Page[c.DeploymentOut]:
    """Deployments by name (platform roles only); ``provider`` is a provider's name."""
    return await service.list_deployments(ctx, access, name=name, engine=engine, provider=provider,
                                          managed_by=managed_by, limit=limit, after=after)


@router.post("/deployments", status_code=201, response_model=c.DeploymentOut)
async def create_deployment(body: c.DeploymentCreate, ctx: Context, access: Write) -> c.DeploymentOut:
    """A deployment as in the platform YAML."""
    return await service.create_deployment(ctx, access, body)


@router.get("/deployments/{deployment_id}", response_model=c.DeploymentOut)
async def get_deployment(deployment_id: str, ctx: Context, access: Read) -> c.DeploymentOut:
    return await service.get_deployment(ctx, access, deployment_id)


@router.patch("/deployments/{deployment_id}", response_model=c.DeploymentOut)
async def update_deployment(deployment_id: str, body: c.DeploymentPatch, ctx: Context,
                            access: Write) -> c.DeploymentOut:
    """Change the fields sent; the result must be a valid deployment as a whole."""
    return await service.update_deployment(ctx, access, deployment_id, body)


@router.delete("/deployments/{deployment_id}", status_code=204, response_class=Response)
async def delete_deployment(deployment_id: str, ctx: Context, access: Write) -> Response:
    """Delete a deployment no model uses (409 naming those that do)."""
    await service.delete_deployment(ctx, access, deployment_id)
    return Response(status_code=204)


def _fleet(request: Request) -> service.FleetView | None:
    return getattr(request.app.state, "fleet", None)


@router.get("/deployments/{deployment_id}/replicas", response_model=c.ReplicasOut)
async def get_replicas(deployment_id: str, request: Request, ctx: Context,
                       access: Read) -> c.ReplicasOut:
    """The replicas: drained or not, and this process's view of their health (breaker state,
    weight, failures)."""
    return await service.get_replicas(ctx, access, deployment_id, _fleet(request))


@router.post("/deployments/{deployment_id}/replicas/{replica}/drain",
             response_model=c.ReplicasOut)
async def drain_replica(deployment_id: str, replica: str, request: Request, ctx: Context,
                        access: Write) -> c.ReplicasOut:
    """Take no new work to ``replica`` (its in-flight work finishes). Idempotent."""
    return await service.set_drained(ctx, access, deployment_id, replica, True, _fleet(request))


@router.post("/deployments/{deployment_id}/replicas/{replica}/undrain",
             response_model=c.ReplicasOut)
async def undrain_replica(deployment_id: str, replica: str, request: Request, ctx: Context,
                          access: Write) -> c.ReplicasOut:
    """Send new work to ``replica`` again. Idempotent."""
    return await service.set_drained(ctx, access, deployment_id, replica, False, _fleet(request))
