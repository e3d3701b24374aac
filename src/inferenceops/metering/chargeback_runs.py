"""Chargeback by period or by day without reading every hour's usage per team.

Showback shares hour h of a deployment among teams as ``cost_h × w_ht / over_h``. In an hour
whose total work stays under the capacity at one GPU rate — the usual hour of a calibrated
deployment — ``over_h`` is the hour's capacity, and ``cost_h / capacity_h = rate / capacity``
whatever part of the hour is costed: one factor for every such hour at that rate. So over a
*run* of hours at one rate a team's share is ``rate / capacity × its work in the run``, and
its work in the run is what the daily rollups answer in a few rows. Only the other hours
(busier than the capacity, a rate change inside the hour, an uncalibrated deployment) are
shared hour by hour from the hourly rows per team; the hours' totals over all teams (the
rollups' third level: a few rows per hour) say which hours those are. Chargeback needs only
each team's work over the bucket.

The answer is ``chargeback_report.compute``'s (the reference, which reads every hour per team
and which the by-hour report uses): the same cost, the same work, each team's share the same
to within a cent — shares are floored to a nano-cent per run rather than per hour, which can
move one cent between two parts of a split that is within a nano-cent of a tie. A record's
cached tokens are never more than its prompt tokens (as the ledger holds them), so the sums
weigh alike at every grouping.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Protocol, TypeVar

from inferenceops.metering.chargeback import NANO, BucketAccount
from inferenceops.metering.chargeback_report import (
    WORK_SCALE,
    ChargebackQuery,
    ChargebackReport,
    DeploymentTotal,
    Line,
    WorkRow,
    buckets,
    lines_of,
    team_key,
    visible,
    weigher,
)
from inferenceops.metering.gpu_costs import GpuSchedule

HOUR_S = 3600
K = TypeVar("K")


class WorkSource(Protocol):
    """The usage a report reads (the store's rollups; a list in tests). Asked for every
    deployment of the report at once where it can be: one scan of the rollups, not one each."""

    async def hour_sums(self, start: datetime, end: datetime, deployments: Sequence[str]
                        ) -> Sequence[tuple[str, float, int, int, int]]:
        """Per deployment and hour in ``[start, end)`` with usage: (the deployment, the hour's
        start in epoch seconds, prompt, completion and cached tokens over all teams) — plain
        values: a 30-day report reads over two thousand of them."""

    async def team_totals(self, start: datetime, end: datetime,
                          deployments: Sequence[str]) -> Sequence[WorkRow]:
        """Per deployment and team: the sums over ``[start, end)`` (whole hours; ``hour`` is
        ``start``)."""

    async def team_hours(self, hours: Sequence[datetime], deployment: str) -> Sequence[WorkRow]:
        """Per hour of ``hours`` and team: the sums."""

    async def team_days(self, start: datetime, end: datetime,
                        deployments: Sequence[str]) -> Sequence[WorkRow]:
        """Per deployment, UTC day in ``[start, end)`` (whole days) and team: the sums
        (``hour``: the day)."""


@dataclass(slots=True)
class _Run:
    rate: Fraction | None  # cents per hour; None: a rate change inside (a run of one hour)
    start: float
    end: float


async def compute_runs(query: ChargebackQuery, schedules: Mapping[str, GpuSchedule],
                       source: WorkSource, now: datetime, *,
                       current_to: datetime | None = None) -> ChargebackReport:
    """The report for ``query`` (by period or by day) from ``source`` (see the module doc)."""
    if query.granularity == "hour":
        raise ValueError("by hour, every hour is read anyway: use chargeback_report.compute")
    names = sorted(name for name in schedules
                   if query.deployment is None or name == query.deployment)
    until = min(query.end, now).timestamp()
    lines: list[Line] = []
    totals: list[DeploymentTotal] = []
    last_all = _hour_up(until)
    loads: dict[str, dict[float, int]] = {name: {} for name in names}
    units = {name: schedules[name].cost_model.units(WORK_SCALE) for name in names}
    for name, at, prompt, completion, cached in (
            await source.hour_sums(query.start, last_all, names) if names else ()):
        prefill, cached_w, decode, _ = units[name]
        cached = min(max(cached, 0), prompt)
        load = loads[name]
        load[at] = load.get(at, 0) + prefill * (prompt - cached) + cached_w * cached \
            + decode * completion
    read: dict[tuple[str, datetime], list[WorkRow]] = {}  # the buckets' sums per team
    if query.granularity == "day" and names:
        for row in await source.team_days(query.start, query.end, names):
            read.setdefault((row.deployment, row.hour), []).append(row)
    elif names and query.start.timestamp() < until:  # by period: one bucket
        for row in await source.team_totals(query.start, _hour_up(min(query.end.timestamp(),
                                                                       until)), names):
            read.setdefault((row.deployment, query.start), []).append(row)
    for name in names:
        schedule = schedules[name]
        load = loads[name]
        for begin, end in buckets(query):
            account, tokens, hours = await _bucket(name, schedule, source, begin, end, until,
                                                   load, read.get((name, begin), []))
            allocation = account.showback() if query.view == "showback" else account.chargeback()
            lines += lines_of(begin, name, allocation, account, tokens)
            totals.append(DeploymentTotal(
                begin, name, allocation.cost_cents, sum(allocation.shares.values()),
                allocation.idle, hours, Fraction(sum(account.work.values()), WORK_SCALE),
                schedule.cost_model.capacity_per_hour * hours))
    return visible(ChargebackReport(query, tuple(lines), tuple(totals), current_to))


async def _bucket(name: str, schedule: GpuSchedule, source: WorkSource, begin: datetime,
                  end: datetime, until: float, load: Mapping[float, int],
                  whole: Sequence[WorkRow]) -> tuple[BucketAccount, dict[str, list[int]], Fraction]:
    """One deployment's bucket: ``load`` is each hour's work over all teams; ``whole`` the
    bucket's sums per team (read by the caller for every deployment at once)."""
    capacity = schedule.cost_model.units(WORK_SCALE)[3]
    work = weigher(schedule)
    stop_all = min(end.timestamp(), until)
    if stop_all <= begin.timestamp():
        return BucketAccount(), {}, Fraction(0)
    last = _hour_up(stop_all)
    cost, hours = Fraction(0), Fraction(0)
    runs: list[_Run] = []
    special: dict[float, tuple[Fraction, Fraction]] = {}  # hour → (cost, capacity)
    # A *plain* hour — costed whole, no rate change inside, not cut by the report's end —
    # costs its rate: those are counted per run and multiplied once (exact Fractions per
    # hour made a 30-day report spend most of its time here); the others are costed exactly.
    starts, costed_from = schedule.change_starts, schedule.start
    plain_hours: dict[int, int] = {}  # run index → its plain hours
    index = bisect.bisect_right(starts, begin.timestamp())
    at = begin.timestamp()
    while at < stop_all:
        stop = at + HOUR_S
        while index < len(starts) and starts[index] <= at:
            index += 1
        rate: Fraction | None
        if (stop <= stop_all and (costed_from is None or costed_from <= at)
                and (index == len(starts) or starts[index] >= stop)):
            rate = schedule.base_cents_per_hour if index == 0 \
                else schedule.change_cents_per_hour[index - 1]
            used = load.get(at, 0)
            # ``numerator``, ``is``: Fraction comparisons, once an hour, were a tenth of the report
            if used > 0 and rate.numerator > 0 and (capacity <= 0 or used >= capacity):
                special[at] = (rate, Fraction(capacity))
            plain = True
        else:
            stop = min(stop, stop_all)
            costed = schedule.costed_seconds(at, stop) / HOUR_S
            cost_h = schedule.cents(at, stop)
            cost += cost_h
            hours += costed
            rate = schedule.rate_over(at, stop)
            used = load.get(at, 0)
            if used > 0 and cost_h > 0 and (capacity <= 0 or rate is None
                                            or used >= capacity * costed):
                special[at] = (cost_h, capacity * costed)
            plain = False
        last_rate = runs[-1].rate if runs else None
        if rate is not None and last_rate is not None and (last_rate is rate or last_rate == rate) \
                and runs[-1].end == at:
            runs[-1].end = at + HOUR_S
        else:
            runs.append(_Run(rate, at, at + HOUR_S))
        if plain:
            plain_hours[len(runs) - 1] = plain_hours.get(len(runs) - 1, 0) + 1
        at += HOUR_S
    for run_index, count in plain_hours.items():
        rate = runs[run_index].rate
        assert rate is not None  # a plain hour has one rate
        cost += rate * count
        hours += count

    tokens: dict[str, list[int]] = {}
    done: dict[str, int] = {}
    for row in whole:
        team = team_key(row.team_id)
        done[team] = done.get(team, 0) + work(row)
        sums = tokens.setdefault(team, [0, 0, 0, 0])
        sums[0] += row.requests
        sums[1] += row.prompt_tokens
        sums[2] += row.completion_tokens
        sums[3] += row.cached_tokens
    shares = dict.fromkeys(done, 0)
    in_special: dict[float, dict[str, int]] = {}
    if special:
        wanted = [datetime.fromtimestamp(h, UTC) for h in sorted(special)]
        for row in await source.team_hours(wanted, name):
            at = row.hour.timestamp()
            if at in special:
                team = team_key(row.team_id)
                per_team = in_special.setdefault(at, {})
                per_team[team] = per_team.get(team, 0) + work(row)
    for at, (cost_h, capacity_h) in special.items():
        per_team = in_special.get(at, {})
        total = sum(per_team.values())
        if total <= 0:
            continue
        over = Fraction(total) if capacity_h <= 0 or total >= capacity_h else capacity_h
        top, bottom = cost_h.numerator * NANO * over.denominator, cost_h.denominator * over.numerator
        for team, amount in per_team.items():
            shares[team] = shares.get(team, 0) + top * amount // bottom
    if capacity > 0:
        for run in runs:
            if not run.rate:
                continue
            if run.start == begin.timestamp() and run.end >= last.timestamp():
                in_run = dict(done)
            else:
                in_run = {}
                for row in await source.team_totals(_at(run.start),
                                                    _at(min(run.end, last.timestamp())), [name]):
                    team = team_key(row.team_id)
                    in_run[team] = in_run.get(team, 0) + work(row)
            for at, per_team in in_special.items():
                if run.start <= at < run.end:
                    for team, amount in per_team.items():
                        in_run[team] = in_run.get(team, 0) - amount
            rate = run.rate
            for team, amount in in_run.items():
                if amount > 0:
                    shares[team] = shares.get(team, 0) + (
                        rate.numerator * NANO * amount // (rate.denominator * capacity))
    idle = max(0, cost.numerator * NANO // cost.denominator - sum(shares.values()))
    work_by_team: dict[str, Fraction | int] = dict(done)
    for team in shares:
        work_by_team.setdefault(team, 0)
    return BucketAccount(cost, shares, idle, work_by_team), tokens, hours


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _hour_up(epoch: float) -> datetime:
    moment = _at(epoch)
    floor = moment.replace(minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(hours=1)


class RowsSource:
    """A ``WorkSource`` over hourly rows per team in memory: what the tests compare with the
    reference computation over the same rows."""

    def __init__(self, rows: Sequence[WorkRow]) -> None:
        self._rows = rows

    def _of(self, deployments: Sequence[str]) -> list[WorkRow]:
        return [row for row in self._rows if row.deployment in deployments]

    async def hour_sums(self, start: datetime, end: datetime, deployments: Sequence[str]
                        ) -> list[tuple[str, float, int, int, int]]:
        return [(name, hour.timestamp(), total.prompt_tokens, total.completion_tokens,
                 total.cached_tokens)
                for (name, hour), rows in _group(((row.deployment, row.hour), row)
                                                 for row in self._of(deployments)
                                                 if start <= row.hour < end).items()
                for total in [_sum(hour, name, None, rows)]]

    async def team_totals(self, start: datetime, end: datetime,
                          deployments: Sequence[str]) -> list[WorkRow]:
        return [_sum(start, name, team, rows) for (name, team), rows in _group(
            ((row.deployment, row.team_id), row) for row in self._of(deployments)
            if start <= row.hour < end).items()]

    async def team_days(self, start: datetime, end: datetime,
                        deployments: Sequence[str]) -> list[WorkRow]:
        return [_sum(day, name, team, rows) for (name, day, team), rows in _group(
            ((row.deployment, row.hour.replace(hour=0), row.team_id), row)
            for row in self._of(deployments) if start <= row.hour < end).items()]

    async def team_hours(self, hours: Sequence[datetime], deployment: str) -> list[WorkRow]:
        wanted = set(hours)
        return [_sum(hour, deployment, team, rows) for (hour, team), rows in _group(
            ((row.hour, row.team_id), row) for row in self._of([deployment])
            if row.hour in wanted).items()]


def _group(pairs: Iterable[tuple[K, WorkRow]]) -> dict[K, list[WorkRow]]:
    out: dict[K, list[WorkRow]] = {}
    for key, row in pairs:
        out.setdefault(key, []).append(row)
    return out


def _sum(hour: datetime, deployment: str, team: str | None, rows: list[WorkRow]) -> WorkRow:
    return WorkRow(hour, deployment, team, sum(r.requests for r in rows),
                   sum(r.prompt_tokens for r in rows), sum(r.completion_tokens for r in rows),
                   sum(r.cached_tokens for r in rows))
