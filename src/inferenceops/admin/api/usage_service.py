"""Admin service for usage reports: whose usage the caller may see, the report, its encoding.

Scope (``deps``, ``usage:read``): platform admins, auditors and billing see every team and
key; a team owner sees their team's usage (every key of it); a member or viewer the usage
of the keys they own in their team. Filters are added to that scope, never in place of
it: a ``team_id`` the caller holds no role in is a 404 (as for every team route), a
``key_id`` they may not see is a 404 as if it did not exist. Platform roles may filter by
any key id, a deleted key's included (usage outlives keys).

Reads only the rollups (``store.repo.usage_rollups``), in one read transaction; nothing is
audited (reads never are). Input errors are 400 naming the parameter (``metering.reports``).

``usage_records`` reads the ledger itself, record by record, newest first, within the same
reach: what auditors ask of guardrail outcomes ("every request a policy blocked for a card
number last week"). A record holds no prompt or answer text, so neither does the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import orjson
from fastapi import Response
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.admin.api.deps import OWN, Access, AdminContext
from inferenceops.admin.api.usage_schemas import UsageRecordOut, UsageRecordsOut
from inferenceops.errors import InvalidParameter, NotFound
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
from inferenceops.store.repo.usage_records import OutcomeFilter, StoredUsage, UsageReach, list_records
from inferenceops.store.repo.usage_rollups import read_report

#: How far back ``usage_records`` reads when ``from`` is not given.
RECORDS_DEFAULT_SPAN = timedelta(days=7)

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


async def usage_records(ctx: AdminContext, access: Access, *, start: str | None, end: str | None,
                        outcome: OutcomeFilter, team_id: str | None, key_id: str | None,
                        model: str | None, limit: int, after: str | None,
                        now: datetime | None = None) -> UsageRecordsOut:
    """The caller's records in [from, to) (default: the last 7 days), newest first."""
    until = parse_time(end, "to") if end is not None else (now or datetime.now(UTC))
    if start is not None:
        since = parse_time(start, "from")
    else:
        since = (until - RECORDS_DEFAULT_SPAN if until - datetime.min.replace(tzinfo=UTC)
                 > RECORDS_DEFAULT_SPAN else datetime.min.replace(tzinfo=UTC))
    if until <= since:
        raise InvalidParameter(f"to: must be after from; got from {since.isoformat()}, to "
                               f"{until.isoformat()}", param="to")
    before = None
    if after is not None:
        if not after.isdigit() or len(after) > 19:
            raise InvalidParameter(f"after: {after[:32]!r} is not a `next_after` of this list",
                                   param="after")
        before = int(after)
    async with ctx.db.read("reading usage records") as tx:
        scope = await _scope(tx, access, team_id, key_id)
        reach = UsageReach(everything=scope.everything or access.everywhere, teams=scope.teams,
                           own_teams=scope.owner_teams, owner=scope.owner)
        page = await list_records(tx, since=since, until=until, reach=reach, outcome=outcome,
                                  team_id=team_id, key_id=key_id, model=model, limit=limit,
                                  before=before)
    return UsageRecordsOut(data=[_record_out(r) for r in page.items], next_after=page.next_after)


def _record_out(stored: StoredUsage) -> UsageRecordOut:
    r = stored.record
    return UsageRecordOut(
        id=stored.id, request_id=r.request_id, at=datetime.fromtimestamp(r.at, UTC).isoformat(),
        team_id=r.team_id, key_id=r.key_id, model=r.model, deployment=r.deployment,
        replica=r.replica, adapter=r.adapter, endpoint=r.endpoint, status=r.status, error_code=r.error_code,
        prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
        cost_nanos=r.cost_nanos, guardrails=r.guardrails)
