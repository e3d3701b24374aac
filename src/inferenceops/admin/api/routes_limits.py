"""Routes: ``/limits`` (operators' rate limits). Thin: parse → authorize → service → schema.

``POST /limits`` sets the limit of the subject named in the body: 201 when it
made one, 200 when it replaced the one the subject had (one limit per subject).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from inferenceops.admin.api import admission_service as service
from inferenceops.admin.api import schemas as s
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, require
from inferenceops.platform.policy import Scope

router = APIRouter(tags=["limits"])


@router.get("/limits", response_model=s.Page[s.LimitOut])
async def list_limits(
    ctx: Context, access: Annotated[Access, Depends(require("limits:read"))],
    scope: Scope | None = None, team_id: str | None = None, key_id: str | None = None,
    model: str | None = None, limit: Limit = DEFAULT_LIMIT, after: After = None,
) -> s.Page[s.LimitOut]:
    """Limits by id; ``team_id`` matches the team's own limits and those of its keys."""
    return await service.list_limits(ctx, access, scope=None if scope is None else scope.value,
                                     team_id=team_id, key_id=key_id, model=model, limit=limit,
                                     after=after)


@router.post("/limits", status_code=201, response_model=s.LimitOut,
             responses={200: {"description": "The subject's limit was replaced",
                              "model": s.LimitOut}})
async def set_limit(body: s.LimitSet, response: Response, ctx: Context,
                    access: Annotated[Access, Depends(require("limits:write"))]) -> s.LimitOut:
    """Create (201) or replace (200) the limit of the subject; values left out are unlimited."""
    out, created = await service.set_limit(ctx, access, body)
    response.status_code = 201 if created else 200
    return out


@router.get("/limits/{limit_id}", response_model=s.LimitOut)
async def get_limit(limit_id: str, ctx: Context,
                    access: Annotated[Access, Depends(require("limits:read"))]) -> s.LimitOut:
    return await service.get_limit(ctx, access, limit_id)


@router.delete("/limits/{limit_id}", status_code=204, response_class=Response)
async def delete_limit(limit_id: str, ctx: Context,
                       access: Annotated[Access, Depends(require("limits:write"))]) -> Response:
    await service.delete_limit(ctx, access, limit_id)
    return Response(status_code=204)
