"""Routes: ``/chargeback`` (GPU cost shared among teams, JSON or CSV with ``format=csv``) and
``/chargeback.csv``.

Thin: parse → authorize (``usage:read``) → service → JSON or CSV. Their own checks answer
400 naming the parameter: ``from``/``to`` that are not a time with an offset or a date,
``to`` not after ``from``, a range longer than ``metering.chargeback_report.MAX_RANGE``, an
unknown ``granularity`` or ``view``, a ``deployment`` that declares no GPU cost, an ``after``
that is no page's ``next_after``, ``limit``/``after`` on a report that is not paged (by
period or day, or the CSV); a ``limit`` out of 1-168 is FastAPI's 422 naming it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from inferenceops.admin.api import chargeback_service as service
from inferenceops.admin.api.chargeback_schemas import ChargebackReportOut
from inferenceops.admin.api.deps import Access, Context, require
from inferenceops.metering.chargeback_report import MAX_PAGE_HOURS, PAGE_HOURS, ChargebackReport

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
PageLimit = Annotated[int | None, Query(ge=1, le=MAX_PAGE_HOURS, description=(
    f"By hour, the JSON comes in pages of this many hours (default {PAGE_HOURS})"))]
PageAfter = Annotated[str | None, Query(description=(
    "`next_after` of the previous page (by hour): where the next page starts"))]
_CSV = {"description": "The report as CSV (`format=csv`)", "content": {service.CSV_TYPE: {}}}


async def _report(ctx: Context, access: Access, start: str | None, to: str | None,
                  granularity: str | None, view: str | None, deployment: str | None,
                  team_id: str | None, paged: bool = False, limit: int | None = None,
                  after: str | None = None) -> ChargebackReport:
    return await service.chargeback_report(ctx, access, start=start, end=to,
                                           granularity=granularity, view=view,
                                           deployment=deployment, team_id=team_id, paged=paged,
                                           limit=limit, after=after)


@router.get("/chargeback", response_model=ChargebackReportOut, responses={200: _CSV})
async def chargeback(
    ctx: Context, access: Annotated[Access, Depends(require("usage:read"))],
    start: From = None, to: To = None, granularity: Grain = None, view: View = None,
    deployment: Filter = None, team_id: Filter = None,
    format: Literal["json", "csv"] = "json",  # noqa: A002 - the parameter's public name
    limit: PageLimit = None, after: PageAfter = None,
) -> Response:
    """Each self-hosted deployment's GPU cost per period, day or hour, shared among the teams
    by the engine work their requests caused (idle cost apart, or spread over the teams). By
    hour the JSON comes in pages of `limit` hours: follow `next_after` until it is null."""
    report = await _report(ctx, access, start, to, granularity, view, deployment, team_id,
                           paged=format == "json", limit=limit, after=after)
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
