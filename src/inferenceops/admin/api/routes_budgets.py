"""Routes: ``/budgets`` (what a team or key may spend per period). Thin: parse → authorize → service.

``POST /budgets`` sets the budget of the subject for the period named in the
body: 201 when it made one, 200 when it replaced the one there was. Amounts
are decimal text in the platform currency, both ways.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response

from inferenceops.admin.api import admission_service as service
from inferenceops.admin.api import schemas as s
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, require
from inferenceops.platform.policy import Period

router = APIRouter(tags=["budgets"])


@router.get("/budgets", response_model=s.Page[s.BudgetOut])
async def list_budgets(
    ctx: Context, access: Annotated[Access, Depends(require("budgets:read"))],
    scope: Literal["team", "key"] | None = None, team_id: str | None = None,
    key_id: str | None = None, period: Period | None = None, limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> s.Page[s.BudgetOut]:
    """Budgets by id; ``team_id`` matches the team's own budgets and those of its keys."""
    return await service.list_budgets(ctx, access, scope=scope, team_id=team_id, key_id=key_id,
                                      period=None if period is None else period.value,
                                      limit=limit, after=after)


@router.post("/budgets", status_code=201, response_model=s.BudgetOut,
             responses={200: {"description": "The subject's budget for the period was replaced",
                              "model": s.BudgetOut}})
async def set_budget(body: s.BudgetSet, response: Response, ctx: Context,
                     access: Annotated[Access, Depends(require("budgets:write"))]) -> s.BudgetOut:
    """Create (201) or replace (200) the budget of a team or key for one period."""
    out, created = await service.set_budget(ctx, access, body)
    response.status_code = 201 if created else 200
    return out


@router.get("/budgets/{budget_id}", response_model=s.BudgetOut)
async def get_budget(budget_id: str, ctx: Context,
                     access: Annotated[Access, Depends(require("budgets:read"))]) -> s.BudgetOut:
    return await service.get_budget(ctx, access, budget_id)


@router.delete("/budgets/{budget_id}", status_code=204, response_class=Response)
async def delete_budget(budget_id: str, ctx: Context,
                        access: Annotated[Access, Depends(require("budgets:write"))]) -> Response:
    await service.delete_budget(ctx, access, budget_id)
    return Response(status_code=204)
