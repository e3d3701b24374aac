"""Routes: ``/audit`` (read-only) and ``/me``. Thin: parse → authorize → service → schema."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from inferenceops.admin.api import schemas as s
from inferenceops.admin.api import services
from inferenceops.admin.api._params import DEFAULT_LIMIT, Limit, SeqAfter
from inferenceops.admin.api._values import Timestamp
from inferenceops.admin.api.deps import Access, Context, Principal, require

router = APIRouter()


@router.get("/audit", response_model=s.Page[s.AuditOut], tags=["audit"])
async def list_audit(
    ctx: Context, access: Annotated[Access, Depends(require("audit:read"))],
    actor: str | None = None, action: str | None = None, target_type: str | None = None,
    target_id: str | None = None, since: Timestamp | None = None, until: Timestamp | None = None,
    limit: Limit = DEFAULT_LIMIT, after: SeqAfter = None,
) -> s.Page[s.AuditOut]:
    """Audit entries oldest first; ``after`` is a sequence number (``next_after``)."""
    return await services.list_audit_entries(
        ctx, access, limit=limit, after=None if after is None else str(after), actor=actor,
        action=action, target_type=target_type, target_id=target_id, since=since, until=until)


@router.get("/me", response_model=s.PrincipalOut, tags=["me"])
async def me(principal: Principal) -> s.PrincipalOut:
    """Who you are to the admin API (any authenticated caller)."""
    return s.PrincipalOut.of(principal)
