"""Admin service for the chargeback report: whose lines the caller may see, the report, its encoding.

Scope (``usage:read``): platform admins, auditors and billing see every deployment's lines,
idle cost and totals; a team owner sees their teams' lines only (a ``team_id`` they hold no
role in is a 404, as for every team route); members and viewers, who see only their own
keys' usage, see no chargeback lines (a share is the whole team's). Reads the deployments'
GPU costs and the rollups in one read transaction (``store.repo.chargeback``; by hour every
hour per team, else by runs of hours: ``metering.chargeback_runs``);
nothing is audited. Input errors are 400 naming the parameter (``metering.chargeback_report``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from fastapi import Response

from inferenceops.admin.api.deps import Access, AdminContext
from inferenceops.errors import InvalidParameter
from inferenceops.metering.chargeback_report import (
    ChargebackQuery,
    ChargebackReport,
    compute,
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
                            deployment: str | None, team_id: str | None,
                            now: datetime | None = None) -> ChargebackReport:
    now = now or datetime.now(UTC)
    grain = parse_granularity(granularity)
    since, until = resolve_range(None if start is None else parse_time(start, "from"),
                                 None if end is None else parse_time(end, "to"), grain, now)
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
