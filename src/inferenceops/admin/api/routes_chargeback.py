"""Routes: ``/chargeback`` (GPU cost shared among teams, JSON or CSV with ``format=csv``) and
``/chargeback.csv``.

Thin: parse → authorize (``usage:read``) → service → JSON or CSV. Their own checks answer
400 naming the parameter: ``from``/``to`` that are not a time with an offset or a date,
``to`` not after ``from``, a range longer than ``metering.chargeback_report.MAX_RANGE``, an
unknown ``granularity`` or ``view``, a ``deployment`` that declares no GPU cost.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from inferenceops.admin.api import chargeback_service as service
from inferenceops.admin.api.chargeback_schemas import ChargebackReportOut
from inferenceops.admin.api.deps import Access, Context, require
from inferenceops.metering.chargeback_report import ChargebackReport

router = APIRouter(tags=["usage"])

From = Annotated[str | None, Query(alias="from", description=(
    "Start: an ISO 8601 time with its offset, or a date (midnight UTC); rounded down to the "
    "hour (the day, by day). Default: 30 days (hourly: 24 hours) before `to`"))]
To = Annotated[str | None, Query(description=(
    "End (exclusive), rounded up to the hour (the day). Default: now; hours are costed only as "
    "far as they have passed"))]
Grain = Annotated[str | None, Query(description="period (one bucket, the default), day or hour")]
View = Annotated[str | None, Query(description=(
    "showback (the default: each team's share of the work the deployment could do, idle cost "
    "apart) or chargeback (the whole cost spread over the teams by their work)"))]
Filter = Annotated[str | None, Query()]
_CSV = {"description": "The report as CSV (`format=csv`)", "content": {service.CSV_TYPE: {}}}


async def _report(ctx: Context, access: Access, start: str | None, to: str | None,
                  granularity: str | None, view: str | None, deployment: str | None,
                  team_id: str | None) -> ChargebackReport:
    return await service.chargeback_report(ctx, access, start=start, end=to,
                                           granularity=granularity, view=view,
                                           deployment=deployment, team_id=team_id)


@router.get("/chargeback", response_model=ChargebackReportOut, responses={200: _CSV})
async def chargeback(
    ctx: Context, access: Annotated[Access, Depends(require("usage:read"))],
    start: From = None, to: To = None, granularity: Grain = None, view: View = None,
    deployment: Filter = None, team_id: Filter = None,
    format: Literal["json", "csv"] = "json",  # noqa: A002 - the parameter's public name
) -> Response:
    """Each self-hosted deployment's GPU cost per period, day or hour, shared among the teams
    by the engine work their requests caused (idle cost apart, or spread over the teams)."""
    report = await _report(ctx, access, start, to, granularity, view, deployment, team_id)
    if format == "csv":
        return service.csv_response(report)
    return service.json_response(report, ctx.currency)


@router.get("/chargeback.csv", response_class=Response, responses={200: _CSV})
async def chargeback_csv(
    ctx: Context, access: Annotated[Access, Depends(require("usage:read"))],
    start: From = None, to: To = None, granularity: Grain = None, view: View = None,
    deployment: Filter = None, team_id: Filter = None,
) -> Response:
    """The same report as CSV: a header line, then one line per team (and idle) part."""
    return service.csv_response(await _report(ctx, access, start, to, granularity, view,
                                              deployment, team_id))
