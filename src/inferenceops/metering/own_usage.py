"""``GET /v1/usage``: what a key may ask about its own usage, and the document it gets. No I/O.

A key sees its team's usage (every key of the team), or — a key without a team — its own
(with the keys it was rotated from: one lineage), per day or hour and per model, from the
rollups. Nothing in the query string can change whose usage that is: only ``from``, ``to``,
``granularity`` and ``model`` (a filter, added with AND) are read; any other parameter —
``team_id``, ``key_id``, ``group_by``, … — is refused with 400 naming it, so a caller who
tries to widen the scope is told so rather than silently given their own data.
Bounded as every report is (``reports.MAX_RANGE``, ``reports.MAX_ROWS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from inferenceops.errors import InvalidParameter
from inferenceops.metering.reports import (
    UsageQuery,
    UsageReport,
    UsageScope,
    parse_granularity,
    parse_time,
    report_json,
    resolve_range,
)
from inferenceops.platform import ApiKey

PARAMETERS = ("from", "to", "granularity", "model")
MAX_FIELDS = 16
GROUP_BY = ("model",)


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidParameter(f"{name}: give it once", param=name)
    return values[0]


def parse_query(query_string: bytes) -> dict[str, list[str]]:
    """The query string's parameters (at most ``MAX_FIELDS``, no NUL); 400 otherwise."""
    try:
        params = parse_qs(query_string.decode("latin-1"), keep_blank_values=True,
                          max_num_fields=MAX_FIELDS)
    except ValueError:
        raise InvalidParameter(f"too many query parameters; /v1/usage reads {', '.join(PARAMETERS)}",
                               param=None) from None
    for name, values in params.items():
        if any("\x00" in v for v in (name, *values)):
            raise InvalidParameter(f"{name[:40]!r}: must not contain NUL characters",
                                   param=name[:40])
    return params


def own_usage_query(key: ApiKey, params: Mapping[str, Sequence[str]], now: datetime) -> UsageQuery:
    """The report ``key`` asks for with ``params`` (``parse_query``'s); 400 naming the
    parameter for anything it may not or cannot ask."""
    for name in params:
        if name not in PARAMETERS:
            raise InvalidParameter(
                f"{name[:40]}: not a parameter of /v1/usage (it shows your key's "
                f"{'team' if key.team_id else 'own usage'}, by day or hour and model); "
                f"use {', '.join(PARAMETERS)}", param=name[:40])
    granularity = parse_granularity(_one(params, "granularity"))
    start, end = _one(params, "from"), _one(params, "to")
    since, until = resolve_range(None if start is None else parse_time(start, "from"),
                                 None if end is None else parse_time(end, "to"), granularity, now)
    scope = (UsageScope(teams=frozenset({key.team_id})) if key.team_id is not None
             else UsageScope(lineages=frozenset({key.meter})))
    return UsageQuery(start=since, end=until, granularity=granularity, scope=scope,
                      group_by=GROUP_BY, model=_one(params, "model"))


def own_usage_document(report: UsageReport, key: ApiKey, currency: str) -> dict[str, Any]:
    doc = report_json(report, currency)
    del doc["group_by"]
    doc.update(object="usage", scope="team" if key.team_id is not None else "key",
               team_id=key.team_id, key={"id": key.id, "prefix": key.prefix})
    return doc
