"""Prices as written: amounts, discounts and times refused with what to fix; schedules compared
by what they charge from now on, and synced without rewriting what has started."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from inferenceops.metering.prices import (
    Entry,
    PriceSpec,
    clashes,
    model_prices,
    parse_instant,
    plan_sync,
    price_of,
    view,
)
from inferenceops.platform.prices import Price

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)


def spec(i: str = "1", o: str = "2", **more: object) -> PriceSpec:
    return PriceSpec.model_validate({"input_per_million": i, "output_per_million": o, **more})


def refusal(**fields: object) -> str:
    with pytest.raises(ValidationError) as caught:
        PriceSpec.model_validate(fields)
    (error,) = caught.value.errors()
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"


def test_amounts_become_exact_nano_units_per_million() -> None:
    price = price_of(spec("0.60", "0.8", cached_input_per_million="0.06",
                          batch_discount_percent="12.5"))
    assert price == Price(600_000_000, 800_000_000, 60_000_000, 1_250)
    assert price_of(spec(0.15, 3)) == Price(150_000_000, 3_000_000_000)  # type: ignore[arg-type]
    assert price_of(spec("0.000000001", "999999999.999999999")).output_per_million == 10**18 - 1
    assert price_of(PriceSpec()) == Price()


@pytest.mark.parametrize(("fields", "says"), [
    ({"input_per_million": "-0.01"}, "input_per_million: Value error, '-0.01' is negative"),
    ({"output_per_million": "abc"}, "output_per_million: Value error, 'abc' is not a number"),
    ({"output_per_million": "1,50"}, "output_per_million: Value error, '1,50' is not a number"),
    ({"input_per_million": "NaN"}, "input_per_million: Value error, 'NaN' is not a finite number"),
    ({"input_per_million": "1e999999"}, "too large"),
    ({"input_per_million": "0.0000000001"}, "more than 9 decimal places"),
    ({"input_per_million": True}, "must be decimal text"),
    ({"input_per_million": [1]}, "must be decimal text"),
    ({"cached_input_per_million": "-1"}, "cached_input_per_million: Value error, '-1' is negative"),
    ({"batch_discount_percent": 101}, "the batch discount is from 0 to 100"),
    ({"batch_discount_percent": "-5"}, "the batch discount is from 0 to 100"),
    ({"batch_discount_percent": "12.345"}, "more than 2 decimal places"),
    ({"input": "1"}, "input: Extra inputs are not permitted"),
])
def test_bad_amounts_say_which_field_and_what_to_fix(fields: dict[str, object], says: str) -> None:
    assert says in refusal(**fields)


@pytest.mark.parametrize(("given_", "means"), [
    ("2026-12-10T00:00:00Z", datetime(2026, 12, 10, tzinfo=UTC)),
    ("2026-12-10t01:30:00.25+01:00", datetime(2026, 12, 10, 0, 30, 0, 250_000, tzinfo=UTC)),
    ("2026-12-10 00:00-05:00", datetime(2026, 12, 10, 5, tzinfo=UTC)),
    ("2026-12-10", datetime(2026, 12, 10, tzinfo=UTC)),
    (date(2026, 12, 10), datetime(2026, 12, 10, tzinfo=UTC)),
    (datetime(2026, 12, 10, 1, tzinfo=UTC) + timedelta(0), datetime(2026, 12, 10, 1, tzinfo=UTC)),
])
def test_times_with_an_offset_or_plain_dates_are_read_in_utc(given_: object, means: datetime) -> None:
    assert parse_instant(given_) == means


@pytest.mark.parametrize(("given_", "says"), [
    ("10/12/2026", "not a time in a known format: write an RFC 3339 time"),
    ("next tuesday", "not a time in a known format"),
    ("2026-12-10T00:00:00", "has no UTC offset: add Z"),
    (datetime(2026, 12, 10), "has no UTC offset"),
    ("2026-13-01", "not a valid time"),
    ("2026-12-10T24:00:00Z", "not a valid time"),
    (1796860800, "1796860800 is not a time in a known format"),
    ("1969-12-31T23:59:59Z", "before 1970-01-01"),
    ("0001-01-01T00:00:00+14:00", "outside the calendar once converted to UTC"),
    ("9999-12-31T23:59:59-14:00", "outside the calendar once converted to UTC"),
    (None, "NoneType is not a time"),
])
def test_times_in_an_unknown_format_are_refused_with_the_format(given_: object, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_instant(given_)
    assert says in str(caught.value)


def test_two_prices_of_one_scope_at_one_time_clash_and_name_where() -> None:
    at = NOW
    entries = [("price", Entry(None, None, spec())), ("a", Entry(None, at, spec())),
               ("b", Entry("spot", at, spec())), ("c", Entry(None, at, spec("9"))),
               ("d", Entry("spot", None, spec())), ("e", Entry("spot", None, spec()))]
    found = clashes(entries)
    assert [where for where, _ in found] == ["c", "e"]
    assert "a second price for the model at 2026-12-10T12:00:00+00:00" in found[0][1]
    assert "a second price for deployment 'spot' from the beginning" in found[1][1]


def test_a_view_is_the_price_in_force_per_scope_and_what_is_still_to_come() -> None:
    past, future = NOW - timedelta(days=3), NOW + timedelta(days=3)
    entries = [Entry(None, None, spec("1")), Entry(None, past, spec("2")),
               Entry(None, future, spec("3")), Entry("spot", future, spec("4"))]
    seen = view(entries, NOW)
    assert seen.in_force == {None: spec("2")}
    assert seen.scheduled == {(None, future, spec("3")), ("spot", future, spec("4"))}
    # The same price in force, written differently ("2.0" from the beginning): the same view.
    same = view([Entry(None, None, spec("2.0", "2.00")), Entry(None, future, spec("3")),
                 Entry("spot", future, spec("4"))], NOW)
    assert same == seen and seen.changed(same) == ()
    assert seen.changed(view(entries[:3], NOW)) == ("prices",)
    assert seen.changed(view([Entry(None, None, spec("7")), *entries[2:]], NOW)) == ("price",)


def test_the_snapshot_schedule_has_every_entry_exactly() -> None:
    prices = model_prices([Entry(None, None, spec("1")), Entry(None, NOW, spec("2")),
                           Entry("spot", NOW, spec("0.5"))])
    noon = NOW.timestamp()
    assert prices.at(noon - 1) == price_of(spec("1")) and prices.at(noon) == price_of(spec("2"))
    assert prices.at(noon, "spot") == price_of(spec("0.5"))


# ---- syncing a stored schedule to a wanted one ------------------------------------------------

DAYS = st.integers(min_value=-5, max_value=5).map(lambda d: NOW + timedelta(days=d))
entries = st.lists(st.builds(Entry, st.sampled_from([None, "a", "b"]), st.none() | DAYS,
                             st.sampled_from([spec("1"), spec("2"), spec("3")])), max_size=8)


def _unique(found: list[Entry]) -> list[Entry]:
    seen: dict[tuple[str | None, datetime | None], Entry] = {}
    for e in found:
        seen.setdefault((e.deployment, e.effective_from), e)
    return list(seen.values())


@given(stored=entries, wanted=entries)
def test_a_sync_gives_the_wanted_view_and_keeps_what_started_unless_its_scope_has_no_price(
        stored: list[Entry], wanted: list[Entry]) -> None:
    stored, wanted = _unique(stored), _unique(wanted)
    rows = [(f"row{i}", e) for i, e in enumerate(stored)]
    delete, add = plan_sync(rows, wanted, NOW)
    after = [e for i, e in rows if i not in delete] + add
    assert view(after, NOW) == view(wanted, NOW)
    assert not clashes([(None, e) for e in after])
    wanted_now = view(wanted, NOW).in_force
    for row_id, e in rows:
        if e.start <= NOW.timestamp() and e.deployment in wanted_now and e.effective_from != NOW:
            assert row_id not in delete  # history
    assert all(e.effective_from is not None and e.effective_from >= NOW for e in add)
    # And syncing again changes nothing.
    assert plan_sync([(f"new{i}", e) for i, e in enumerate(after)], wanted, NOW) == ([], [])


def test_a_new_price_in_force_starts_now_and_the_old_one_stays_history() -> None:
    rows = [("old", Entry(None, None, spec("1"))), ("later", Entry(None, NOW + timedelta(1), spec("5")))]
    delete, add = plan_sync(rows, [Entry(None, None, spec("2"))], NOW)
    assert delete == ["later"] and add == [Entry(None, NOW, spec("2"))]
    # A model no longer priced: its past prices go (the audit log keeps them).
    assert plan_sync(rows, [], NOW) == (["old", "later"], [])
    assert Decimal("1") == spec("1").input_per_million
