"""metering.reports, the pure half of usage reports: reading times and groupings, rounding and
bounding a range, totals, the row limit, scope emptiness, JSON and CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from inferenceops.errors import InvalidParameter
from inferenceops.metering.reports import (
    EVERYTHING,
    MAX_ROWS,
    UsageQuery,
    UsageReport,
    UsageRow,
    UsageScope,
    ceil_to,
    floor_to,
    parse_granularity,
    parse_group_by,
    parse_time,
    report_csv,
    report_json,
    resolve_range,
)

NOW = datetime(2026, 12, 4, 12, 30, 15, tzinfo=UTC)


def refused(param: str) -> pytest.RaisesContext[InvalidParameter]:
    return pytest.raises(InvalidParameter, match=f"^{param}: ")


@pytest.mark.parametrize(("text", "moment"), [
    ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
    ("2026-12-01T10:15:00Z", datetime(2026, 12, 1, 10, 15, tzinfo=UTC)),
    (" 2026-12-01T10:15:00+02:00 ", datetime(2026, 12, 1, 8, 15, tzinfo=UTC)),
    ("2026-12-01T00:30:00-01:00", datetime(2026, 12, 1, 1, 30, tzinfo=UTC)),
])
def test_times_are_iso_with_an_offset_or_dates(text: str, moment: datetime) -> None:
    assert parse_time(text, "from") == moment


@pytest.mark.parametrize("text", ["yesterday", "2026-12-01T10:00:00", "2026-13-01", "", "1e9",
                                  "0001-01-01T00:00:00+01:00"])
def test_other_times_are_400_naming_the_parameter(text: str) -> None:
    with refused("to") as error:
        parse_time(text, "to")
    assert error.value.param == "to" and error.value.status == 400


def test_grouping_and_granularity() -> None:
    assert parse_group_by(["team, model", "team", "KEY"]) == ("team", "model", "key")
    assert parse_group_by([]) == () and parse_group_by([" , "]) == ()
    with refused("group_by"):
        parse_group_by(["team,colour"])
    assert (parse_granularity(None), parse_granularity("Hour")) == ("day", "hour")
    with refused("granularity"):
        parse_granularity("week")


def test_ranges_round_out_to_whole_buckets() -> None:
    assert floor_to(NOW, "hour") == datetime(2026, 12, 4, 12, tzinfo=UTC)
    assert ceil_to(NOW, "day") == datetime(2026, 12, 5, tzinfo=UTC)
    assert ceil_to(datetime(2026, 12, 4, tzinfo=UTC), "day") == datetime(2026, 12, 4, tzinfo=UTC)
    assert resolve_range(None, None, "day", NOW) == (datetime(2026, 11, 5, tzinfo=UTC),
                                                    datetime(2026, 12, 5, tzinfo=UTC))
    assert resolve_range(None, None, "hour", NOW) == (datetime(2026, 12, 3, 13, tzinfo=UTC),
                                                     datetime(2026, 12, 4, 13, tzinfo=UTC))
    start = datetime(2026, 12, 1, 10, 59, tzinfo=UTC)
    assert resolve_range(start, start + timedelta(minutes=2), "hour", NOW) == (
        datetime(2026, 12, 1, 10, tzinfo=UTC), datetime(2026, 12, 1, 12, tzinfo=UTC))


def test_ranges_are_bounded() -> None:
    day = datetime(2026, 1, 1, tzinfo=UTC)
    assert resolve_range(day, day + timedelta(days=31), "hour", NOW)[1] == day + timedelta(days=31)
    with refused("from") as error:
        resolve_range(day, day + timedelta(days=31, hours=1), "hour", NOW)
    assert "an hourly report covers at most 31 days" in error.value.message
    assert resolve_range(day, day + timedelta(days=366), "day", NOW)[0] == day
    with refused("from"):
        resolve_range(day, day + timedelta(days=367), "day", NOW)
    for end in (day, day - timedelta(seconds=1)):
        with refused("to"):
            resolve_range(day, end, "day", NOW)
    with refused("to"):
        resolve_range(None, datetime(9999, 12, 31, 12, tzinfo=UTC), "day", NOW)


def test_scopes_that_cover_nothing_are_empty() -> None:
    assert UsageScope().empty and UsageScope(owner="usr_1").empty
    assert UsageScope(owner_teams=frozenset({"t"})).empty
    for scope in (EVERYTHING, UsageScope(teams=frozenset({"t"})), UsageScope(keys=frozenset({"k"})),
                  UsageScope(lineages=frozenset({"k"})),
                  UsageScope(owner="usr_1", owner_teams=frozenset({"t"}))):
        assert not scope.empty


def _report(rows: list[UsageRow], group_by: tuple[str, ...] = ("team", "model")) -> UsageReport:
    query = UsageQuery(start=NOW - timedelta(days=1), end=NOW, granularity="day", scope=EVERYTHING,
                       group_by=group_by, model="m")
    return UsageReport(query, tuple(rows), NOW)


def test_totals_json_and_the_row_limit() -> None:
    rows = [UsageRow(NOW, ("t1", "m"), (1, 2, 3, 4, 5, 6, 7_000_000_001)),
            UsageRow(NOW, (None, "m"), (10, 20, 30, 40, 50, 60, 70))]
    report = _report(rows)
    assert report.totals == (11, 22, 33, 44, 55, 66, 7_000_000_071)
    doc = report_json(report, "EUR")
    assert doc["totals"]["cost"] == "7.000000071" and doc["currency"] == "EUR"
    assert doc["filters"] == {"model": "m"} and doc["group_by"] == ["team", "model"]
    assert doc["data"][1] == {"start": NOW.isoformat(), "team_id": None, "model": "m",
                              "requests": 10, "prompt_tokens": 20, "completion_tokens": 30,
                              "cached_tokens": 40, "estimated_requests": 50, "errors": 60,
                              "cost_nanos": 70, "cost": "0.00000007"}
    assert len(_report([rows[0]] * MAX_ROWS).rows) == MAX_ROWS
    with refused("group_by"):
        _report([rows[0]] * (MAX_ROWS + 1))


def test_csv_has_a_header_every_row_and_no_formulas() -> None:
    rows = [UsageRow(NOW, ("=cmd|'/c calc'!A1", "+1"), (1, 0, 0, 0, 0, 0, 1500)),
            UsageRow(NOW, (None, "plain, with comma"), (2, 0, 0, 0, 0, 1, 0))]
    text = report_csv(_report(rows)).decode()
    assert text.endswith("\r\n")
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["start", "team_id", "model", "requests", "prompt_tokens",
                        "completion_tokens", "cached_tokens", "estimated_requests", "errors",
                        "cost_nanos", "cost"]
    assert table[1][1:3] == ["'=cmd|'/c calc'!A1", "'+1"] and table[1][-1] == "0.0000015"
    assert table[2][1:3] == ["", "plain, with comma"] and table[2][-3:] == ["1", "0", "0"]
