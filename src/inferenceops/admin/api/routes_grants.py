"""Routes: ``/grants`` (which models a team may use). Thin: parse → authorize → service → schema.

Model names may contain ``/`` (``meta-llama/Llama-3.1-8B``), hence the ``:path`` converter.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from inferenceops.admin.api import schemas as s
from inferenceops.admin.api import services
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, require

router = APIRouter(tags=["grants"])


@router.get("/grants", response_model=s.Page[s.GrantOut])
async def list_grants(ctx: Context, access: Annotated[Access, Depends(require("grants:read"))],
                      team_id: str | None = None, limit: Limit = DEFAULT_LIMIT,
                      after: After = None) -> s.Page[s.GrantOut]:
    return await services.list_grants(ctx, access, team_id, limit=limit, after=after)


@router.put("/grants/{team_id}/{model:path}", response_model=s.GrantOut)
async def put_grant(team_id: str, model: str, ctx: Context,
                    access: Annotated[Access, Depends(require("grants:write"))]) -> s.GrantOut:
    """Let the team use the model (idempotent)."""
    return await services.put_grant(ctx, access, team_id, model)


@router.delete("/grants/{team_id}/{model:path}", status_code=204, response_class=Response)
async def delete_grant(team_id: str, model: str, ctx: Context,
                       access: Annotated[Access, Depends(require("grants:write"))]) -> Response:
    await services.delete_grant(ctx, access, team_id, model)
    return Response(status_code=204)
