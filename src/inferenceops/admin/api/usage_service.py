"""Admin service for usage reports: whose usage the caller may see, the report, its encoding.

Scope (``deps``, ``usage:read``): platform admins, auditors and billing see every team and
key; a team owner sees their team's usage (every key of it); a member or viewer the usage
of the keys they own in their team. Filters are added to that scope, never in place of
it: a ``team_id`` the caller holds no role in is a 404 (as for every team route), a
``key_id`` they may not see is a 404 as if it did not exist. Platform roles may filter by
any key id, a deleted key's included (usage outlives keys).

Reads only the rollups (``store.repo.usage_rollups``), in one read transaction; nothing is
audited (reads never are). Input errors are 400 naming the parameter (``metering.reports``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from fastapi import Response
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.admin.api.deps import OWN, Access, AdminContext
from inferenceops.errors import NotFound
from inferenceops.metering.reports import (
    EVERYTHING,
    Granularity,
    UsageQuery,
    UsageReport,
    UsageScope,
    parse_group_by,
    parse_time,
    report_csv,
    report_json,
    resolve_range,
)
from inferenceops.store import errors as store_errors
from inferenceops.store import repo
from inferenceops.store.repo.usage_rollups import read_report

CSV_TYPE = "text/csv; charset=utf-8"


async def _scope(tx: AsyncSession, access: Access, team_id: str | None,
                 key_id: str | None) -> UsageScope:
    if access.everywhere:
        return EVERYTHING
    if team_id is not None and team_id not in access.teams:
        access.check(team_id, f"team {team_id!r}")  # 404: not a team of theirs
    if key_id is not None:
        try:
            key = await repo.get_api_key(tx, key_id)
        except store_errors.NotFound:
            raise NotFound(f"No key {key_id!r}") from None
        if not access.allows(key.team_id, owner_user_id=key.user_id, whole_team=False):
            raise NotFound(f"No key {key_id!r}")
    own = frozenset(team for team, extent in access.teams.items() if extent == OWN)
    return UsageScope(teams=access.whole_teams(), owner=access.principal.user_id, owner_teams=own)


async def usage_report(ctx: AdminContext, access: Access, *, start: str | None, end: str | None,
                       granularity: Granularity, group_by: Sequence[str], team_id: str | None,
                       key_id: str | None, model: str | None, deployment: str | None,
                       adapter: str | None, now: datetime | None = None) -> UsageReport:
    since, until = resolve_range(None if start is None else parse_time(start, "from"),
                                 None if end is None else parse_time(end, "to"), granularity,
                                 now or datetime.now(UTC))
    groups = parse_group_by(group_by)
    async with ctx.db.read("reading usage") as tx:
        scope = await _scope(tx, access, team_id, key_id)
        query = UsageQuery(start=since, end=until, granularity=granularity, scope=scope,
                           group_by=groups, team_id=team_id, key_id=key_id, model=model,
                           deployment=deployment, adapter=adapter)
        return await read_report(tx, query)


def json_response(report: UsageReport, currency: str) -> Response:
    return Response(orjson.dumps(report_json(report, currency)), media_type="application/json")


def csv_response(report: UsageReport) -> Response:
    query = report.query
    name = f"usage-{query.granularity}-{query.start:%Y%m%dT%H%MZ}-{query.end:%Y%m%dT%H%MZ}.csv"
    return Response(report_csv(report), media_type=CSV_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
