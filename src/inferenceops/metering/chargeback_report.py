"""The chargeback report: each self-hosted deployment's GPU cost per bucket, shared among teams.

For every deployment that declares a ``gpu_cost`` (``metering.gpu_costs``) and every bucket
of the report — the whole period, each UTC day or each UTC hour (``granularity``) — it
answers what the deployment cost, what each team's share was and what stayed idle
(``metering.chargeback``: ``showback`` shows idle apart, ``chargeback`` spreads it over the
teams that used the deployment), in cents that add up exactly to the deployment's cost.

The engine work comes from the hourly usage rollups (per deployment and team: prompt,
completion and cached tokens), so the report is as current as the rollups (``current_to``).
Hours are costed as far as they have passed: the current hour counts up to ``now``, later
ones not at all. A deployment is costed from its ``gpu_cost.since`` or else its creation.
Deployments that declare no GPU cost (external providers, priced per token) are not in
it; usage of a deployment that no longer exists has nobody to charge and is left out.

Who sees what: platform roles every line; a team owner the lines of their teams only (no
idle line, no deployment totals: they would reveal other teams' use). Input errors are
``InvalidParameter`` (400) naming the parameter. No I/O.

**Pages, by hour.** A week by hour for forty teams is over twenty thousand lines (5 MB of
JSON); the JSON report by hour comes in pages of ``limit`` hours (``page_of``: 24 by default,
at most 168), the next one asked with ``after`` = the page's ``next_after`` (the hour it
stops at; null on the last page), as the admin API's listings page with ``limit`` and
``after``. Each page is computed from its own hours only, which is exact: by hour every
bucket is shared on its own. Reports by period or day, and the CSV export, come whole.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, Literal, NamedTuple

from inferenceops.errors import InvalidParameter
from inferenceops.metering.chargeback import IDLE, Allocation, BucketAccount
from inferenceops.metering.gpu_costs import GpuSchedule
from inferenceops.metering.reports import csv_cell, rounded_range

Granularity = Literal["period", "day", "hour"]
View = Literal["showback", "chargeback"]
HOUR = timedelta(hours=1)
#: Hours in a page of the JSON report by hour: by default, and at most (``page_of``).
PAGE_HOURS, MAX_PAGE_HOURS = 24, 168
#: The longest range: a quarter (92 days) of days or as one period, 31 days of hours.
MAX_RANGE: dict[Granularity, timedelta] = {"period": timedelta(days=92), "day": timedelta(days=92),
                                           "hour": timedelta(days=31)}
DEFAULT_SPAN: dict[Granularity, timedelta] = {"period": timedelta(days=30),
                                              "day": timedelta(days=30), "hour": timedelta(hours=24)}
#: Work is counted in millionths of a unit: integers, exact for the file's weights (6 decimals).
WORK_SCALE = 10**6
_NO_TEAM = ""  # usage of keys that belong to no team: a party of its own
CSV_COLUMNS = ("start", "deployment", "kind", "team_id", "cost_cents", "cost", "share_percent",
               "work", "requests", "prompt_tokens", "completion_tokens", "cached_tokens")


@dataclass(frozen=True)
class ChargebackQuery:
    start: datetime
    end: datetime
    granularity: Granularity
    view: View
    deployment: str | None = None
    team_id: str | None = None
    #: The teams whose lines the caller may see; None: everything (idle and totals included).
    visible_teams: frozenset[str] | None = None


class WorkRow(NamedTuple):
    """One hour's usage of one deployment by one team (from the hourly rollups); a named
    tuple, as ``Line``: a report by hour reads tens of thousands."""

    hour: datetime
    deployment: str
    team_id: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


class Line(NamedTuple):
    """A team's (or idle's) part of one deployment in one bucket.

    A named tuple: a report by hour builds tens of thousands (a frozen dataclass's
    ``__init__`` cost more than the rest of the line's arithmetic)."""

    start: datetime
    deployment: str
    kind: Literal["team", "idle"]
    team_id: str | None
    cost_cents: int
    share_percent: float
    #: The engine work of the team's requests, in ``WORK_SCALE`` units (millionths).
    work_units: int | Fraction = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class DeploymentTotal:
    """One deployment in one bucket: what it cost, its GPU-hours, and how that was shared."""

    start: datetime
    deployment: str
    gpu_cost_cents: int
    teams_cents: int
    idle_cents: int
    costed_hours: Fraction
    work: Fraction
    capacity: Fraction


@dataclass(frozen=True)
class ChargebackReport:
    query: ChargebackQuery
    lines: tuple[Line, ...]
    totals: tuple[DeploymentTotal, ...]  # empty for a caller who sees only their teams
    current_to: datetime | None = None  # the rollups hold the ledger as it was then
    #: By hour, a page: where the next page starts (None: this is the last one) ...
    next_after: datetime | None = None
    #: ... and the range the caller asked for, when the lines cover only part of it.
    asked: tuple[datetime, datetime] | None = None


# ---- parsing ----------------------------------------------------------------------------------

def parse_granularity(text: str | None) -> Granularity:
    value = (text or "period").strip().lower()
    for known in ("period", "day", "hour"):
        if value == known:
            return known
    raise InvalidParameter(f"granularity: {value[:32]!r} is not a granularity; use period, day "
                           "or hour", param="granularity")


def parse_view(text: str | None) -> View:
    value = (text or "showback").strip().lower()
    if value == "showback":
        return "showback"
    if value == "chargeback":
        return "chargeback"
    raise InvalidParameter(f"view: {value[:32]!r} is not a view; use showback (idle cost apart) "
                           "or chargeback (idle cost spread over the teams)", param="view")


def resolve_range(start: datetime | None, end: datetime | None, granularity: Granularity,
                  now: datetime) -> tuple[datetime, datetime]:
    """``[from, to)`` rounded out to whole hours (days for ``day``); 400 naming the parameter
    when it is empty, backwards or longer than ``MAX_RANGE``."""
    def too_long(since: datetime, to: datetime) -> str:
        return (f"a chargeback report by {granularity} covers at most "
                f"{MAX_RANGE[granularity].days} days; {since.isoformat()} to {to.isoformat()} is "
                f"{(to - since) / timedelta(days=1):g} days. Ask for a shorter range")
    return rounded_range(start, end, "day" if granularity == "day" else "hour", now,
                         default_span=DEFAULT_SPAN[granularity],
                         max_range=MAX_RANGE[granularity], too_long=too_long)


def page_of(since: datetime, until: datetime, granularity: Granularity, limit: int | None,
            after: datetime | None) -> tuple[datetime, datetime]:
    """The hours ``[start, end)`` of the page a JSON report by hour answers: ``limit`` hours
    (default ``PAGE_HOURS``) from ``after`` (a previous page's ``next_after``) or from the
    start. By period or by day the report is whole, and paging it is refused (400)."""
    if granularity != "hour":
        if limit is not None or after is not None:
            param = "limit" if limit is not None else "after"
            raise InvalidParameter(f"{param}: only the report by hour comes in pages; by "
                                   f"{granularity} it is whole", param=param)
        return since, until
    hours = PAGE_HOURS if limit is None else limit
    if not 1 <= hours <= MAX_PAGE_HOURS:
        raise InvalidParameter(f"limit: a page holds 1 to {MAX_PAGE_HOURS} hours, not {hours}",
                               param="limit")
    start = since
    if after is not None:
        if not since < after < until or after.minute or after.second or after.microsecond:
            raise InvalidParameter(f"after: {after.isoformat()} is not the `next_after` of a page "
                                   f"of this report ({since.isoformat()} to {until.isoformat()})",
                                   param="after")
        start = after
    return start, min(until, start + hours * HOUR)


# ---- computing --------------------------------------------------------------------------------

def weigher(schedule: GpuSchedule) -> Callable[[WorkRow], int]:
    """A row's engine work in ``WORK_SCALE`` units, by the deployment's cost model."""
    prefill, cached_w, decode, _ = schedule.cost_model.units(WORK_SCALE)

    def work(row: WorkRow) -> int:
        cached = min(max(row.cached_tokens, 0), row.prompt_tokens)
        return prefill * (row.prompt_tokens - cached) + cached_w * cached + decode * row.completion_tokens
    return work


def team_key(team_id: str | None) -> str:
    """A team's key in the shares: its id, or "" for keys in no team (a party of its own)."""
    return team_id or _NO_TEAM


def buckets(query: ChargebackQuery) -> list[tuple[datetime, datetime]]:
    if query.granularity == "period":
        return [(query.start, query.end)]
    step = HOUR if query.granularity == "hour" else timedelta(days=1)
    out, at = [], query.start
    while at < query.end:
        out.append((at, min(at + step, query.end)))
        at += step
    return out


def compute(query: ChargebackQuery, schedules: Mapping[str, GpuSchedule],
            rows: Iterable[WorkRow], now: datetime, *,
            current_to: datetime | None = None) -> ChargebackReport:
    """The report for ``query`` from each deployment's schedule and the hourly work rows."""
    by_hour: dict[tuple[str, float], list[WorkRow]] = defaultdict(list)
    for row in rows:
        if row.deployment in schedules:
            by_hour[(row.deployment, row.hour.timestamp())].append(row)
    names = sorted(name for name in schedules
                   if query.deployment is None or name == query.deployment)
    lines: list[Line] = []
    totals: list[DeploymentTotal] = []
    until = min(query.end, now).timestamp()
    for name in names:
        schedule = schedules[name]
        prefill, cached_w, decode, capacity_units = schedule.cost_model.units(WORK_SCALE)
        for begin, end in buckets(query):
            account = BucketAccount()
            tokens: dict[str, list[int]] = {}
            hours = Fraction(0)
            start_s, end_s = begin.timestamp(), end.timestamp()
            while start_s < end_s:
                stop_s = min(start_s + 3600, until)
                if stop_s > start_s:
                    costed = schedule.costed_seconds(start_s, stop_s) / 3600
                    work: dict[str, int] = {}
                    for row in by_hour.get((name, start_s), ()):
                        team = row.team_id or _NO_TEAM
                        prompt = row.prompt_tokens
                        cached = min(max(row.cached_tokens, 0), prompt)
                        work[team] = work.get(team, 0) + prefill * (prompt - cached) \
                            + cached_w * cached + decode * row.completion_tokens
                        sums = tokens.get(team)
                        if sums is None:
                            tokens[team] = [row.requests, prompt, row.completion_tokens,
                                            row.cached_tokens]
                        else:
                            sums[0] += row.requests
                            sums[1] += prompt
                            sums[2] += row.completion_tokens
                            sums[3] += row.cached_tokens
                    account.add_hour(schedule.cents(start_s, stop_s), capacity_units * costed, work)
                    hours += costed
                start_s += 3600
            allocation = account.showback() if query.view == "showback" else account.chargeback()
            lines += lines_of(begin, name, allocation, account, tokens)
            totals.append(DeploymentTotal(
                begin, name, allocation.cost_cents, sum(allocation.shares.values()),
                allocation.idle, hours,
                Fraction(sum(account.work.values()), WORK_SCALE),
                schedule.cost_model.capacity_per_hour * hours))
    return visible(ChargebackReport(query, tuple(lines), tuple(totals), current_to))


def lines_of(begin: datetime, deployment: str, allocation: Allocation, account: BucketAccount,
             tokens: Mapping[str, list[int]]) -> list[Line]:
    cost = allocation.cost_cents
    shares, work = allocation.shares, account.work
    out = []
    for team in sorted(shares):
        requests, prompt, completion, cached = tokens.get(team, (0, 0, 0, 0))
        cents = shares[team]
        out.append(Line(begin, deployment, "team", team or None, cents,
                        round(cents * 100 / cost, 2) if cost else 0.0, work.get(team, 0),
                        requests, prompt, completion, cached))
    if allocation.idle or not shares:
        idle = allocation.idle
        out.append(Line(begin, deployment, "idle", None, idle,
                        round(idle * 100 / cost, 2) if cost else 0.0))
    return out


def visible(report: ChargebackReport) -> ChargebackReport:
    query = report.query
    lines = report.lines
    if query.team_id is not None:
        lines = tuple(line for line in lines if line.kind == "team" and line.team_id == query.team_id)
    if query.visible_teams is None:
        return ChargebackReport(query, lines, report.totals, report.current_to)
    seen = tuple(line for line in lines
                 if line.kind == "team" and line.team_id in query.visible_teams)
    return ChargebackReport(query, seen, (), report.current_to)


# ---- writing ----------------------------------------------------------------------------------

def money(cents: int) -> str:
    """Cents as the currency's decimal text: 1234 → "12.34"."""
    return f"{cents // 100}.{cents % 100:02d}"


def _work(value: Fraction) -> float:
    return round(float(value), 3)


def _units(units: int | Fraction) -> float:
    """Work in ``WORK_SCALE`` units as the API writes it (3 decimals); an int's true division
    rounds once, as ``float(Fraction(units, WORK_SCALE))`` would, without the Fraction."""
    return round(units / WORK_SCALE if type(units) is int else float(units) / WORK_SCALE, 3)


def line_json(line: Line, start: str | None = None) -> dict[str, Any]:
    """``start``: the line's start as text, when the caller has it already (a report's lines
    share a few starts: by hour, 40 teams' lines each wrote the same hour again)."""
    (moment, deployment, kind, team_id, cents, percent, units, requests, prompt, completion,
     cached) = line
    return {"start": moment.isoformat() if start is None else start,
            "deployment": deployment, "kind": kind, "team_id": team_id,
            "cost": money(cents), "cost_cents": cents,
            "share_percent": percent, "work": _units(units), "requests": requests,
            "prompt_tokens": prompt, "completion_tokens": completion, "cached_tokens": cached}


def _iso(seen: dict[datetime, str], moment: datetime) -> str:
    text = seen.get(moment)
    if text is None:
        text = seen[moment] = moment.isoformat()
    return text


def total_json(total: DeploymentTotal) -> dict[str, Any]:
    return {"start": total.start.isoformat(), "deployment": total.deployment,
            "cost": money(total.gpu_cost_cents), "cost_cents": total.gpu_cost_cents,
            "teams_cost_cents": total.teams_cents, "idle_cost_cents": total.idle_cents,
            "costed_hours": _work(total.costed_hours), "work": _work(total.work),
            "capacity": _work(total.capacity)}


def report_json(report: ChargebackReport, currency: str) -> dict[str, Any]:
    """The report as the admin API answers it (``object: "chargeback.report"``)."""
    query = report.query
    filters = {name: value for name, value in (("deployment", query.deployment),
                                               ("team_id", query.team_id)) if value is not None}
    cents = sum(line.cost_cents for line in report.lines)
    idle = sum(line.cost_cents for line in report.lines if line.kind == IDLE)
    starts: dict[datetime, str] = {}
    since, until = report.asked or (query.start, query.end)
    return {
        "object": "chargeback.report", "from": since.isoformat(),
        "to": until.isoformat(), "granularity": query.granularity, "view": query.view,
        "filters": filters, "currency": currency,
        "current_to": None if report.current_to is None else report.current_to.isoformat(),
        "data": [line_json(line, _iso(starts, line.start)) for line in report.lines],
        "deployments": [total_json(total) for total in report.totals],
        "totals": {"cost": money(cents), "cost_cents": cents, "idle_cost_cents": idle},
        "next_after": None if report.next_after is None else report.next_after.isoformat(),
    }


def report_csv(report: ChargebackReport) -> bytes:
    """One header line (``CSV_COLUMNS``), then one line per team or idle part (UTF-8, CRLF)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    starts: dict[datetime, str] = {}
    writer.writerows(
        (_iso(starts, line.start), csv_cell(line.deployment), line.kind, csv_cell(line.team_id),
         line.cost_cents, money(line.cost_cents), line.share_percent, _units(line.work_units),
         line.requests, line.prompt_tokens, line.completion_tokens, line.cached_tokens)
        for line in report.lines)
    return out.getvalue().encode()
