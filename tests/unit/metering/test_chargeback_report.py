"""The chargeback report's arithmetic over hours: partial hours, costing starts, price changes
off the hour, and who sees which lines. The known scenario end to end is ``test_admin_chargeback``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from pydantic import ValidationError

from inferenceops.errors import InvalidParameter
from inferenceops.metering.chargeback_report import (
    ChargebackQuery,
    WorkRow,
    compute,
    money,
    parse_granularity,
    resolve_range,
)
from inferenceops.metering.gpu_costs import GpuCostSpec

T0 = datetime(2026, 12, 3, tzinfo=UTC)
HOUR = timedelta(hours=1)
ONE_GPU = GpuCostSpec(gpus=1, cost_per_gpu_hour="3.60")  # 360 cents an hour: a cent per 10 s


def query(hours: int, **extra: object) -> ChargebackQuery:
    return ChargebackQuery(T0, T0 + hours * HOUR, extra.pop("granularity", "period"),  # type: ignore[arg-type]
                           extra.pop("view", "showback"), **extra)  # type: ignore[arg-type]


def row(hour: int, team: str | None, prompt: int = 100, completion: int = 0) -> WorkRow:
    return WorkRow(T0 + hour * HOUR, "gpu", team, 1, prompt, completion, 0)


def test_the_current_hour_is_costed_up_to_now_and_later_hours_not_at_all() -> None:
    now = T0 + HOUR + timedelta(minutes=15)
    report = compute(query(3), {"gpu": ONE_GPU.schedule()}, [], now)
    [total] = report.totals
    assert total.gpu_cost_cents == 360 + 90 and total.costed_hours == Fraction(5, 4)


def test_a_deployment_is_costed_from_its_creation_unless_since_says_otherwise() -> None:
    created = T0 + 2 * HOUR
    now = T0 + 4 * HOUR
    [total] = compute(query(4), {"gpu": ONE_GPU.schedule(created)}, [], now).totals
    assert total.gpu_cost_cents == 720
    since = GpuCostSpec(gpus=1, cost_per_gpu_hour="3.60", since=T0 + timedelta(minutes=30))
    [total] = compute(query(4), {"gpu": since.schedule(created)}, [], now).totals
    assert total.gpu_cost_cents == 1260  # 3.5 hours


def test_a_change_inside_an_hour_splits_that_hour() -> None:
    spec = GpuCostSpec(gpus=1, cost_per_gpu_hour="3.60", changes=[
        {"effective_from": T0 + timedelta(minutes=30), "gpus": 2, "cost_per_gpu_hour": "3.60"}])
    schedule = spec.schedule()
    start = T0.timestamp()
    assert schedule.cents(start, start + 3600) == 180 + 360
    assert schedule.cents(start + 3600, start + 7200) == 720


def test_work_and_idle_add_up_in_every_bucket_and_a_team_sees_only_its_lines() -> None:
    spec = GpuCostSpec(gpus=1, cost_per_gpu_hour="3.60", cost_model={"capacity_per_hour": 1000})
    rows = [row(0, "t_a", 300), row(0, "t_b", 100), row(1, None, 500)]
    now = T0 + 10 * HOUR
    report = compute(query(2, granularity="hour"), {"gpu": spec.schedule()}, rows, now)
    by_hour: dict[datetime, dict[str | None, int]] = {}
    for line in report.lines:
        by_hour.setdefault(line.start, {})[line.team_id if line.kind == "team" else "idle"] = \
            line.cost_cents
    assert by_hour == {T0: {"t_a": 108, "t_b": 36, "idle": 216},
                       T0 + HOUR: {None: 180, "idle": 180}}
    seen = compute(query(2, visible_teams=frozenset({"t_b"})), {"gpu": spec.schedule()}, rows, now)
    assert [(line.team_id, line.cost_cents) for line in seen.lines] == [("t_b", 36)]
    assert seen.totals == ()


def test_deployments_without_usage_show_their_cost_as_idle() -> None:
    report = compute(query(1), {"gpu": ONE_GPU.schedule()}, [row(0, "t_a")], T0 + HOUR,)
    assert [(line.kind, line.cost_cents) for line in report.lines] == [("team", 360)]
    idle = compute(query(1), {"gpu": ONE_GPU.schedule()}, [], T0 + HOUR)
    assert [(line.kind, line.cost_cents) for line in idle.lines] == [("idle", 360)]


def test_money_is_cents_as_decimal_text() -> None:
    assert [money(c) for c in (0, 5, 99, 100, 123456)] == ["0.00", "0.05", "0.99", "1.00", "1234.56"]


def test_bad_ranges_and_granularities_name_the_parameter() -> None:
    now = T0
    with pytest.raises(InvalidParameter) as caught:
        resolve_range(T0, T0 - HOUR, "period", now)
    assert caught.value.param == "to"
    with pytest.raises(InvalidParameter) as caught:
        resolve_range(T0 - timedelta(days=93), T0, "day", now)
    assert caught.value.param == "from"
    with pytest.raises(InvalidParameter) as caught:
        parse_granularity("month")
    assert caught.value.param == "granularity"
    assert resolve_range(T0 + timedelta(minutes=10), T0 + timedelta(minutes=20), "period", now) == (
        T0, T0 + HOUR)


@pytest.mark.parametrize("bad", [
    {"gpus": 1, "cost_per_gpu_hour": "1", "changes": [
        {"effective_from": "2026-12-10", "gpus": 1, "cost_per_gpu_hour": "1"},
        {"effective_from": "2026-12-10T00:00:00Z", "gpus": 2, "cost_per_gpu_hour": "1"}]},
    {"gpus": 1, "cost_per_gpu_hour": "1", "since": "2026-12-10", "changes": [
        {"effective_from": "2026-12-01", "gpus": 1, "cost_per_gpu_hour": "1"}]},
    {"gpus": 1, "cost_per_gpu_hour": "1", "cost_model": {"cached": "0.0000001"}},
    {"gpus": 1, "cost_per_gpu_hour": "NaN"},
    {"gpus": 1},
])
def test_a_gpu_cost_that_cannot_mean_one_thing_is_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        GpuCostSpec.model_validate(bad)
