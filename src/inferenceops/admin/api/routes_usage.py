"""Routes: ``/usage`` (a usage report as JSON, or CSV with ``format=csv``), ``/usage.csv`` and
``/usage/records`` (the ledger's records, newest first, filtered by guardrail outcome among others).

Thin: parse → authorize (``usage:read``) → service → JSON or CSV. Both read the rollups
only. Their own checks answer 400 naming the parameter: ``from``/``to`` that are not a time
with an offset or a date, ``to`` not after ``from``, a range longer than
``metering.reports.MAX_RANGE``, an unknown ``group_by``, more than ``MAX_ROWS`` rows.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from inferenceops.admin.api import usage_service as service
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, require
from inferenceops.admin.api.usage_schemas import UsageRecordsOut, UsageReportOut
from inferenceops.metering.reports import Granularity, UsageReport
from inferenceops.platform.guardrails import ACTIONS, CUSTOM, ENTITIES
from inferenceops.store.repo.usage_records import OutcomeFilter

router = APIRouter(tags=["usage"])

From = Annotated[str | None, Query(alias="from", description=(
    "Start: an ISO 8601 time with its offset, or a date (midnight UTC); rounded down to the "
    "granularity. Default: 30 days (hourly: 24 hours) before `to`"))]
To = Annotated[str | None, Query(description=(
    "End (exclusive), rounded up to the granularity. Default: now (the current bucket included)"))]
GroupBy = Annotated[list[str] | None, Query(description=(
    "team, key, model, deployment, adapter: comma-separated or repeated"))]
Filter = Annotated[str | None, Query()]
_CSV = {"description": "The report as CSV (`format=csv`)", "content": {service.CSV_TYPE: {}}}


async def _report(ctx: Context, access: Access, start: str | None, to: str | None,
                  granularity: Granularity, group_by: list[str] | None, team_id: str | None,
                  key_id: str | None, model: str | None, deployment: str | None,
                  adapter: str | None) -> UsageReport:
    return await service.usage_report(
        ctx, access, start=start, end=to, granularity=granularity, group_by=group_by or (),
        team_id=team_id, key_id=key_id, model=model, deployment=deployment, adapter=adapter)


@router.get("/usage", response_model=UsageReportOut, responses={200: _CSV})
async def usage(
    ctx: Context, access: Annotated[Access, Depends(require("usage:read"))],
    start: From = None, to: To = None, granularity: Granularity = "day",
    group_by: GroupBy = None, team_id: Filter = None, key_id: Filter = None, model: Filter = None,
    deployment: Filter = None, adapter: Filter = None,
    format: Literal["json", "csv"] = "json",  # noqa: A002 - the parameter's public name
) -> Response:
    """Requests, tokens, errors and cost per hour or day (and per team, key, model, deployment,
    adapter as grouped), within what the caller may see."""
    report = await _report(ctx, access, start, to, granularity, group_by, team_id, key_id, model,
                           deployment, adapter)
    if format == "csv":
        return service.csv_response(report)
    return service.json_response(report, ctx.currency)


@router.get("/usage.csv", response_class=Response, responses={200: _CSV})
async def usage_csv(
    ctx: Context, access: Annotated[Access, Depends(require("usage:read"))],
    start: From = None, to: To = None, granularity: Granularity = "day",
    group_by: GroupBy = None, team_id: Filter = None, key_id: Filter = None, model: Filter = None,
    deployment: Filter = None, adapter: Filter = None,
) -> Response:
    """The same report as CSV: a header line, then one line per row."""
    return service.csv_response(await _report(ctx, access, start, to, granularity, group_by,
                                              team_id, key_id, model, deployment, adapter))


#: What a usage record's ``guardrails`` names: the detectors' entity types, ``custom`` (a
#: pattern or keyword), ``model`` and ``input_size`` (the model and size rules).
OUTCOME_ENTITIES = (*ENTITIES, CUSTOM, "model", "input_size")
#: Strings with a bounded length and a pattern of the names rather than enums: an enum gives
#: fuzzers (and careless scripts) no length bound, and a URL past the HTTP server's limit is
#: answered 414 by the server itself, without the error document.
GuardrailAction = Annotated[str | None, Query(
    max_length=16, pattern=f"^({'|'.join(ACTIONS)})$", description="allow, flag, redact or block")]
OutcomeEntity = Annotated[str | None, Query(
    max_length=32, pattern=f"^({'|'.join(OUTCOME_ENTITIES)})$",
    description=f"An entity type or rule: {', '.join(OUTCOME_ENTITIES)}")]
PolicyFilter = Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                                           description="A guardrail policy's name")]
RecordsFrom = Annotated[str | None, Query(alias="from", description=(
    "Start: an ISO 8601 time with its offset, or a date. Default: 7 days before `to`"))]


@router.get("/usage/records", response_model=UsageRecordsOut)
async def usage_records(
    ctx: Context, access: Annotated[Access, Depends(require("usage:read"))],
    start: RecordsFrom = None, to: To = None,
    guardrail_action: GuardrailAction = None, entity: OutcomeEntity = None,
    policy: PolicyFilter = None, guarded: bool = False,
    team_id: Filter = None, key_id: Filter = None, model: Filter = None,
    limit: Limit = DEFAULT_LIMIT, after: After = None,
) -> UsageRecordsOut:
    """Usage records, newest first, within what the caller may see: by guardrail outcome
    (``guardrail_action``, ``entity``, ``policy``; ``guarded``: any finding), team, key, model.
    Never prompt or answer text: the ledger holds none."""
    outcome = OutcomeFilter(guardrail_action, entity, policy, guarded)
    return await service.usage_records(ctx, access, start=start, end=to, outcome=outcome,
                                       team_id=team_id, key_id=key_id, model=model,
                                       limit=limit, after=after)
