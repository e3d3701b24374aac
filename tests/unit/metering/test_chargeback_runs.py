"""Chargeback by runs of hours gives the reference's answer (``chargeback_report.compute``, which
reads every hour per team): the same cost and work, each team's part within a cent, parts that
add up exactly — over random usage, capacities, rate changes on and off the hour, ``since``
inside an hour, and a report that ends inside the current hour."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferenceops.metering.chargeback_report import ChargebackQuery, WorkRow, compute
from inferenceops.metering.chargeback_runs import RowsSource, compute_runs
from inferenceops.metering.gpu_costs import GpuCostSpec

T0 = datetime(2026, 12, 1, tzinfo=UTC)
HOURS = 60


def row(hour: int, team: str | None, prompt: int, completion: int, cached: int) -> WorkRow:
    return WorkRow(T0 + timedelta(hours=hour), "gpu", team, 1, prompt, completion, min(cached, prompt))


rows = st.lists(st.builds(row, st.integers(0, HOURS - 1), st.sampled_from(["t_a", "t_b", "t_c", None]),
                          st.integers(0, 5000), st.integers(0, 2000), st.integers(0, 3000)),
                max_size=60)
minutes = st.integers(0, HOURS * 60)


@st.composite
def specs(draw: st.DrawFn) -> GpuCostSpec:
    changes = draw(st.lists(minutes, max_size=3, unique=True))
    since = draw(st.none() | st.integers(0, 600))
    return GpuCostSpec(
        gpus=draw(st.integers(0, 8)), cost_per_gpu_hour=str(draw(st.integers(0, 500)) / 100),
        since=None if since is None else T0 + timedelta(minutes=since),
        changes=[{"effective_from": T0 + timedelta(minutes=m, seconds=1), "gpus": draw(st.integers(0, 8)),
                  "cost_per_gpu_hour": str(draw(st.integers(0, 900)) / 100)} for m in changes
                 if since is None or m > since],
        cost_model={"prefill": 1, "cached": "0.1", "decode": draw(st.sampled_from([1, 4])),
                    "capacity_per_hour": draw(st.sampled_from([0, 2000, 20000, 10**6]))})


@settings(max_examples=150, deadline=None)
@given(usage=rows, spec=specs(), granularity=st.sampled_from(["period", "day"]),
       view=st.sampled_from(["showback", "chargeback"]), now_minutes=st.integers(30, HOURS * 60 + 600))
def test_runs_give_the_reference_answer(usage: list[WorkRow], spec: GpuCostSpec, granularity: str,
                                        view: str, now_minutes: int) -> None:
    query = ChargebackQuery(T0, T0 + timedelta(hours=HOURS), granularity, view)  # type: ignore[arg-type]
    now = T0 + timedelta(minutes=now_minutes)
    usage = [r for r in usage if r.hour < now]  # the ledger holds no future
    schedules = {"gpu": spec.schedule()}
    reference = compute(query, schedules, usage, now)
    fast = asyncio.run(compute_runs(query, schedules, RowsSource(usage), now))
    assert [t.gpu_cost_cents for t in fast.totals] == [t.gpu_cost_cents for t in reference.totals]
    assert [(t.work, t.costed_hours) for t in fast.totals] == [
        (t.work, t.costed_hours) for t in reference.totals]
    ref = {(line.start, line.kind, line.team_id): line for line in reference.lines}
    got = {(line.start, line.kind, line.team_id): line for line in fast.lines}
    for key in ref.keys() | got.keys():
        a, b = ref.get(key), got.get(key)
        cents = (a.cost_cents if a else 0, b.cost_cents if b else 0)
        assert abs(cents[0] - cents[1]) <= 1, (key, cents)
        if a and b and a.kind == "team":
            assert (a.work_units, a.requests, a.prompt_tokens) == (b.work_units, b.requests,
                                                                 b.prompt_tokens)
    for total in fast.totals:
        assert sum(line.cost_cents for line in fast.lines if line.start == total.start) == \
            total.gpu_cost_cents


def test_hourly_reports_are_not_for_runs() -> None:
    query = ChargebackQuery(T0, T0 + timedelta(hours=2), "hour", "showback")
    with pytest.raises(ValueError, match="by hour"):
        asyncio.run(compute_runs(query, {}, RowsSource([]), T0))
