"""Routes: ``/retained-bodies`` (the compliance export). Thin: parse → authorize → service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from inferenceops.admin.api import retention_service as service
from inferenceops.admin.api._params import DEFAULT_LIMIT, Limit, SeqAfter
from inferenceops.admin.api._values import Timestamp
from inferenceops.admin.api.deps import Access, Context, require

router = APIRouter(tags=["retention"])

Text = Annotated[str | None, Query(max_length=200)]


@router.get("/retained-bodies", response_model=service.RetainedBodiesOut)
async def retained_bodies(
    ctx: Context, access: Annotated[Access, Depends(require("bodies:read"))],
    team_id: Text = None, since: Timestamp | None = None, until: Timestamp | None = None,
    request_id: Text = None, limit: Limit = DEFAULT_LIMIT, after: SeqAfter = None,
) -> service.RetainedBodiesOut:
    """Bodies kept for teams whose retention is ``store``, redacted, oldest first (by row id:
    ``after`` is the previous page's ``next_after``). Auditors and platform admins only;
    every page read is recorded in the audit log (``retained_bodies.read``)."""
    return await service.read_bodies(ctx, access, team_id=team_id, since=since, until=until,
                                     request_id=request_id, after=after, limit=limit)
