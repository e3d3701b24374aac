"""Admin service for the chargeback report: whose lines the caller may see, the report, its encoding.

Scope (``usage:read``): platform admins, auditors and billing see every deployment's lines,
idle cost and totals; a team owner sees their teams' lines only (a ``team_id`` they hold no
role in is a 404, as for every team route); members and viewers, who see only their own
keys' usage, see no chargeback lines (a share is the whole team's). Reads the deployments'
GPU costs and the rollups in one read transaction (``store.repo.chargeback``; by hour every
hour per team — the page's hours, for the JSON —, else by runs of hours:
``metering.chargeback_runs``); nothing is audited. Input errors are 400 naming the parameter
(``metering.chargeback_report``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import orjson
from fastapi import Response

from inferenceops.admin.api.deps import Access, AdminContext
from inferenceops.errors import InvalidParameter
from inferenceops.metering.chargeback_report import (
    ChargebackQuery,
    ChargebackReport,
    Granularity,
    compute,
    page_of,
    parse_granularity,
    parse_view,
    report_csv,
    report_json,
    resolve_range,
)
from inferenceops.metering.chargeback_runs import compute_runs
from inferenceops.metering.reports import parse_time
from inferenceops.store.repo.chargeback import RollupSource, gpu_schedules, read_work
from inferenceops.store.repo.usage_rollups import read_state

CSV_TYPE = "text/csv; charset=utf-8"


async def chargeback_report(ctx: AdminContext, access: Access, *, start: str | None,
                            end: str | None, granularity: str | None, view: str | None,
                            deployment: str | None, team_id: str | None, paged: bool = False,
                            limit: int | None = None, after: str | None = None,
                            now: datetime | None = None) -> ChargebackReport:
    """The report, or with ``paged`` (the JSON) the page ``limit`` and ``after`` say."""
    now = now or datetime.now(UTC)
    grain = parse_granularity(granularity)
    asked = resolve_range(None if start is None else parse_time(start, "from"),
                          None if end is None else parse_time(end, "to"), grain, now)
    since, until = asked
    if paged:
        since, until = page_of(*asked, grain, limit,
                               None if after is None else parse_time(after, "after"))
    elif limit is not None or after is not None:
        param = "limit" if limit is not None else "after"
        raise InvalidParameter(f"{param}: the CSV export is the whole range; limit and after "
                               "page the JSON report by hour", param=param)
    report = await _compute(ctx, access, since, until, grain, view, deployment, team_id, now)
    if (since, until) == asked:
        return report
    return replace(report, asked=asked, next_after=until if until < asked[1] else None)


async def _compute(ctx: AdminContext, access: Access, since: datetime, until: datetime,
                   grain: Granularity, view: str | None, deployment: str | None,
                   team_id: str | None, now: datetime) -> ChargebackReport:
    visible = None
    if not access.everywhere:
        if team_id is not None and team_id not in access.teams:
            access.check(team_id, f"team {team_id!r}")  # 404: not a team of theirs
        visible = access.whole_teams()
    query = ChargebackQuery(since, until, grain, parse_view(view), deployment, team_id, visible)
    async with ctx.db.read("reading chargeback") as tx:
        schedules = await gpu_schedules(tx)
        if deployment is not None and deployment not in schedules:
            raise InvalidParameter(f"deployment: {deployment[:200]!r} is not a deployment that "
                                   "declares a gpu_cost", param="deployment")
        state = await read_state(tx)
        current_to = None if state is None else state.refreshed_at
        if grain != "hour":
            return await compute_runs(query, schedules, RollupSource(tx), now,
                                      current_to=current_to)
        names = [deployment] if deployment is not None else list(schedules)
        rows = await read_work(tx, since, until, names)
    return compute(query, schedules, rows, now, current_to=current_to)


def json_response(report: ChargebackReport, currency: str) -> Response:
    return Response(orjson.dumps(report_json(report, currency)), media_type="application/json")


def csv_response(report: ChargebackReport) -> Response:
    query = report.query
    name = (f"chargeback-{query.view}-{query.granularity}-{query.start:%Y%m%dT%H%MZ}-"
            f"{query.end:%Y%m%dT%H%MZ}.csv")
    return Response(report_csv(report), media_type=CSV_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
