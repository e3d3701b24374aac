"""Usage reports: what a report asks, whose usage it may show, what it answers, and how it is
written out (JSON, CSV). No I/O: the store answers a ``UsageQuery`` (``store.repo.usage_rollups``)
and both the admin API and the data plane's ``GET /v1/usage`` ask through here.

A report sums the rollups (``usage_rollups``: per UTC hour and day, per team, key, model,
adapter and deployment) over buckets of one ``granularity``, grouped by the dimensions in
``group_by``. ``from`` is rounded down and ``to`` up to the granularity, so a bucket is in
the report when it starts in ``[from, to)``; ``to`` defaults to now (the current bucket is
included), ``from`` to ``DEFAULT_SPAN`` before ``to``. Bounded so every answer stays small
and fast: at most ``MAX_RANGE`` of buckets and ``MAX_ROWS`` rows (past that: narrow it).

A ``UsageScope`` is whose rows the caller may see; filters (team, key, model, …) are
added to it with AND, so no filter can widen it.

Input errors are ``InvalidParameter`` (400) naming the parameter.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Protocol

from inferenceops.errors import InvalidParameter
from inferenceops.platform.policy import from_nanos

Granularity = Literal["hour", "day"]
GRANULARITIES: tuple[Granularity, ...] = ("hour", "day")
#: Dimension → its column in the rollups.
DIMENSIONS = {"team": "team_id", "key": "key_id", "model": "model", "deployment": "deployment",
              "adapter": "adapter"}
MEASURES = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens",
            "estimated_requests", "errors", "cost_nanos")
STEP: dict[Granularity, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
#: The longest range a report covers: 31 days of hours (744 buckets), 366 days of days.
MAX_RANGE: dict[Granularity, timedelta] = {"hour": timedelta(days=31), "day": timedelta(days=366)}
DEFAULT_SPAN: dict[Granularity, timedelta] = {"hour": timedelta(hours=24), "day": timedelta(days=30)}
#: The most rows a report answers; a larger one is refused (narrow the range, filters or grouping).
MAX_ROWS = 50_000
_COST = MEASURES.index("cost_nanos")
#: CSV cells a spreadsheet would run as a formula start with one of these: they get a leading "'".
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# ---- parsing ----------------------------------------------------------------------------------

def parse_time(text: str, param: str) -> datetime:
    """An ISO 8601 time with its UTC offset (``2026-12-01T10:00:00Z``) or a date (midnight UTC)."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidParameter(f"{param}: {text[:64]!r} is not a time; give an ISO 8601 time with "
                               "its offset (2026-12-01T10:00:00Z) or a date (2026-12-01)",
                               param=param) from None
    if parsed.tzinfo is None:
        raise InvalidParameter(f"{param}: {text[:64]!r} has no UTC offset; add one (Z, +02:00) "
                               "or give a date", param=param)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidParameter(f"{param}: {text[:64]!r} is outside the calendar once made UTC",
                               param=param) from None


def parse_granularity(text: str | None, param: str = "granularity") -> Granularity:
    value = (text or "day").strip().lower()
    if value == "hour":
        return "hour"
    if value == "day":
        return "day"
    raise InvalidParameter(f"{param}: {value[:32]!r} is not a granularity; use hour or day",
                           param=param)


def parse_group_by(values: Iterable[str], param: str = "group_by") -> tuple[str, ...]:
    """Dimensions from ``team,model`` (or the parameter repeated), in the order given, once each."""
    found: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if not name:
                continue
            if name not in DIMENSIONS:
                raise InvalidParameter(f"{param}: {part[:32]!r} is not something to group by; use "
                                       f"{', '.join(DIMENSIONS)}", param=param)
            if name not in found:
                found.append(name)
    return tuple(found)


def floor_to(moment: datetime, granularity: Granularity) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if granularity == "day" else moment


def ceil_to(moment: datetime, granularity: Granularity) -> datetime:
    floor = floor_to(moment, granularity)
    return floor if floor == moment else floor + STEP[granularity]


def resolve_range(start: datetime | None, end: datetime | None, granularity: Granularity,
                  now: datetime) -> tuple[datetime, datetime]:
    """``[from, to)`` rounded out to whole buckets; 400 naming ``to`` or ``from`` when it is
    empty, backwards or longer than ``MAX_RANGE``."""
    def too_long(since: datetime, to: datetime) -> str:
        return (f"{'an hourly' if granularity == 'hour' else 'a daily'} report covers at most "
                f"{MAX_RANGE[granularity].days} days; {since.isoformat()} to {to.isoformat()} is "
                f"{(to - since) / timedelta(days=1):g} days. Ask for a shorter range"
                + (", or by day" if granularity == "hour" else ""))
    return rounded_range(start, end, granularity, now, default_span=DEFAULT_SPAN[granularity],
                         max_range=MAX_RANGE[granularity], too_long=too_long)


def rounded_range(start: datetime | None, end: datetime | None, unit: Granularity, now: datetime,
                  *, default_span: timedelta, max_range: timedelta,
                  too_long: Callable[[datetime, datetime], str]) -> tuple[datetime, datetime]:
    """``[from, to)`` rounded out to whole ``unit``s (``to`` defaults to now, ``from`` to
    ``default_span`` before it); 400 naming ``to`` when it is empty or backwards, ``from``
    (with ``too_long``'s message) when it is longer than ``max_range``."""
    if start is not None and end is not None and end <= start:
        raise InvalidParameter(f"to: must be after from; got from {start.isoformat()}, to "
                               f"{end.isoformat()}", param="to")
    try:
        to = ceil_to(end if end is not None else now, unit)
        since = floor_to(start if start is not None else to - default_span, unit)
    except OverflowError:
        raise InvalidParameter("to: the range reaches past the calendar", param="to") from None
    if to <= since:
        raise InvalidParameter(f"to: must be after from ({since.isoformat()} rounded to the "
                               f"{unit}); got {to.isoformat()}", param="to")
    if to - since > max_range:
        raise InvalidParameter(f"from: {too_long(since, to)}", param="from")
    return since, to


# ---- what a report asks -----------------------------------------------------------------------

@dataclass(frozen=True)
class UsageScope:
    """Whose usage a caller may see: everything, or rows of ``teams``, of ``keys``, of the keys of
    ``lineages`` (a key and the keys rotated from it), or of the keys ``owner`` (a user id) holds
    in ``owner_teams``. A row is visible when any of these covers it."""

    everything: bool = False
    teams: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()
    lineages: frozenset[str] = frozenset()
    owner: str | None = None
    owner_teams: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.everything or self.teams or self.keys or self.lineages
                    or (self.owner is not None and self.owner_teams))


EVERYTHING = UsageScope(everything=True)


@dataclass(frozen=True)
class UsageQuery:
    """One report: the range (whole buckets), the grouping, the scope and the filters."""

    start: datetime
    end: datetime
    granularity: Granularity
    scope: UsageScope
    group_by: tuple[str, ...] = ()
    team_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    deployment: str | None = None
    adapter: str | None = None

    def filters(self) -> dict[str, str]:
        """{rollup column: value} of the filters given."""
        given = {"team_id": self.team_id, "key_id": self.key_id, "model": self.model,
                 "deployment": self.deployment, "adapter": self.adapter}
        return {column: value for column, value in given.items() if value is not None}


# ---- what it answers --------------------------------------------------------------------------

@dataclass(frozen=True)
class UsageRow:
    """One bucket of one group: ``dims`` in ``group_by`` order, ``measures`` in ``MEASURES`` order."""

    start: datetime
    dims: tuple[str | None, ...]
    measures: tuple[int, ...]


@dataclass(frozen=True)
class UsageReport:
    query: UsageQuery
    rows: tuple[UsageRow, ...]
    #: The rollups hold the ledger as it was at this time (None: never rolled up yet).
    current_to: datetime | None = None
    totals: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        if len(self.rows) > MAX_ROWS:
            raise InvalidParameter(
                f"group_by: this report has more than {MAX_ROWS:,} rows; narrow the range, "
                "filter it or group by less", param="group_by")
        sums = tuple(map(sum, zip(*(row.measures for row in self.rows), strict=True))) \
            if self.rows else (0,) * len(MEASURES)
        object.__setattr__(self, "totals", sums)


class UsageSource(Protocol):
    """Something that answers reports (the store's rollups)."""

    async def report(self, query: UsageQuery) -> UsageReport: ...


def _measures(values: Sequence[int]) -> dict[str, Any]:
    out: dict[str, Any] = dict(zip(MEASURES, values, strict=True))
    out["cost"] = from_nanos(out["cost_nanos"])
    return out


def row_json(report: UsageReport, row: UsageRow, iso: dict[datetime, str] | None = None
             ) -> dict[str, Any]:
    """One row of the report's JSON; ``iso`` caches each bucket's text (rows share a few)."""
    start = iso.get(row.start) if iso is not None else None
    if start is None:
        start = row.start.isoformat()
        if iso is not None:
            iso[row.start] = start
    out: dict[str, Any] = {"start": start}
    out.update(zip([DIMENSIONS[name] for name in report.query.group_by], row.dims, strict=True))
    out.update(zip(MEASURES, row.measures, strict=True))
    out["cost"] = from_nanos(out["cost_nanos"])
    return out


def report_json(report: UsageReport, currency: str) -> dict[str, Any]:
    """The report as the JSON both APIs answer (``object: "usage.report"``)."""
    query = report.query
    iso: dict[datetime, str] = {}
    return {
        "object": "usage.report", "from": query.start.isoformat(), "to": query.end.isoformat(),
        "granularity": query.granularity, "group_by": list(query.group_by),
        "filters": query.filters(), "currency": currency,
        "current_to": None if report.current_to is None else report.current_to.isoformat(),
        "data": [row_json(report, row, iso) for row in report.rows],
        "totals": _measures(report.totals),
    }


def csv_cell(value: str | None) -> str:
    if value is None:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def report_csv(report: UsageReport) -> bytes:
    """One header line, then one line per row (UTF-8, CRLF as RFC 4180 says)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["start", *(DIMENSIONS[name] for name in report.query.group_by), *MEASURES,
                     "cost"])
    for row in report.rows:
        writer.writerow([row.start.isoformat(), *(csv_cell(v) for v in row.dims), *row.measures,
                         from_nanos(row.measures[_COST])])
    return out.getvalue().encode()
