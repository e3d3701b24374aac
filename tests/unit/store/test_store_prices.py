"""Price schedules in the store (SQLite and PostgreSQL): created as written, changed from now on
with the history kept, entries scheduled and deleted one by one, applied from a platform file
idempotently — and bad input refused naming the field, with nothing written."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from inferenceops.config.apply import apply_platform
from inferenceops.config.spec import PlatformSpec
from inferenceops.metering.prices import PriceSpec
from inferenceops.store import Conflict, Database, Invalid, NotFound, repo
from inferenceops.store.tables_catalog import ModelPrice

NOW = datetime(2026, 12, 10, 12, tzinfo=UTC)
LATER = NOW + timedelta(days=45)
DEPLOYMENTS = [{"name": "sim", "engine": "simulator", "profile": "test-fast", "served_model": "m"},
               {"name": "spot", "engine": "simulator", "profile": "test-fast", "served_model": "m"}]
MODEL = {"name": "chat", "deployment": "sim",
         "price": {"input_per_million": "0.60", "output_per_million": "0.80"},
         "prices": [{"effective_from": "2027-01-09T12:00:00Z", "input_per_million": "0.5",
                     "output_per_million": "0.7", "cached_input_per_million": "0.05",
                     "batch_discount_percent": 50},
                    {"deployment": "spot", "input_per_million": "0.3", "output_per_million": "0.4"}]}


def price(i: str, o: str = "1") -> PriceSpec:
    return PriceSpec.model_validate({"input_per_million": i, "output_per_million": o})


async def _setup(db: Database, model: dict[str, Any] = MODEL) -> str:
    async with db.transaction() as tx:
        for spec in DEPLOYMENTS:
            await repo.create_deployment(tx, spec)
        return (await repo.create_model(tx, model)).id


async def _rows(db: Database) -> int:
    async with db.read() as tx:
        return int((await tx.execute(select(func.count()).select_from(ModelPrice))).scalar_one())


async def _revision(db: Database) -> int:
    async with db.read() as tx:
        return await repo.revision(tx)


async def test_a_model_is_created_with_its_schedule_as_written(db: Database) -> None:
    model_id = await _setup(db)
    async with db.read() as tx:
        record = await repo.get_model(tx, model_id)
        history = await repo.list_prices(tx, model_id)
    assert history == record.prices
    assert [(p.deployment, p.effective_from, p.input_per_million) for p in history] == [
        (None, None, "0.60"), (None, datetime(2027, 1, 9, 12, tzinfo=UTC), "0.5"), ("spot", None, "0.3")]
    assert history[1].cached_input_per_million == "0.05" and history[1].batch_discount_percent == "50"
    before, after = repo.model_spec(record, NOW), repo.model_spec(record, LATER)
    assert before.price == price("0.60", "0.80")
    assert [(p.deployment, p.effective_from) for p in before.prices] == [
        ("spot", None), (None, datetime(2027, 1, 9, 12, tzinfo=UTC))]
    assert after.price is not None and after.price.input_per_million == 0.5  # the change has started
    assert [(p.deployment, p.effective_from) for p in after.prices] == [("spot", None)]


async def test_changing_the_price_keeps_the_old_one_as_history(db: Database) -> None:
    model_id = await _setup(db)
    start = await _revision(db)
    async with db.transaction() as tx:
        record = await repo.update_model(tx, model_id, {"price": {"input_per_million": "0.9",
                                                                  "output_per_million": "0.8"}}, now=NOW)
    assert await _revision(db) == start + 1
    assert [(p.deployment, p.effective_from, p.input_per_million) for p in record.prices] == [
        (None, None, "0.60"), (None, NOW, "0.9"), (None, datetime(2027, 1, 9, 12, tzinfo=UTC), "0.5"),
        ("spot", None, "0.3")]
    async with db.transaction() as tx:  # the same again, and an unrelated field: no price rows move
        same = await repo.update_model(tx, model_id, {"max_output_tokens": 77}, now=NOW + timedelta(1))
    assert same.prices == record.prices
    async with db.transaction() as tx:  # no changes to come any more, and no spot price
        cleared = await repo.update_model(tx, model_id, {"prices": []}, now=NOW)
    assert [(p.deployment, p.effective_from) for p in cleared.prices] == [(None, None), (None, NOW)]


async def test_scheduling_and_deleting_prices_one_by_one(db: Database) -> None:
    model_id = await _setup(db)
    start = await _revision(db)
    async with db.transaction() as tx:
        added = await repo.add_price(tx, model_id, price("2"), effective_from=LATER, now=NOW)
        spot = await repo.add_price(tx, model_id, price("1"), deployment="spot", now=NOW)
    assert (added.effective_from, added.deployment, added.input_per_million) == (LATER, None, "2")
    assert (spot.effective_from, spot.deployment_id is not None) == (NOW, True)  # from now
    assert await _revision(db) == start + 2
    async with db.transaction() as tx:
        deleted = await repo.delete_price(tx, model_id, added.id, now=NOW)
    assert deleted == added
    async with db.read() as tx:
        assert added.id not in {p.id for p in await repo.list_prices(tx, model_id)}


@pytest.mark.parametrize(("call", "error", "says"), [
    (lambda tx, m: repo.add_price(tx, m, price("2"), effective_from=NOW - timedelta(seconds=1), now=NOW),
     Invalid, "is in the past"),
    (lambda tx, m: repo.add_price(tx, m, price("2"), effective_from=datetime(2027, 1, 9, 12, tzinfo=UTC),
                                  now=NOW), Conflict, "already has a price for the model"),
    (lambda tx, m: repo.add_price(tx, m, price("2"), deployment="nope", now=NOW), NotFound,
     "deployment 'nope', which does not exist"),
    (lambda tx, m: repo.add_price(tx, "mdl_missing", price("2"), now=NOW), NotFound, "no model"),
    (lambda tx, m: repo.delete_price(tx, m, "prc_missing", now=NOW), NotFound, "has no price"),
    (lambda tx, m: repo.update_model(tx, m, {"prices": [
        {"effective_from": "2027-01-01T00:00:00Z", "input_per_million": "1"},
        {"effective_from": "2027-01-01T01:00:00+01:00", "input_per_million": "2"}]}, now=NOW),
     Invalid, "a second price for the model at 2027-01-01T00:00:00+00:00"),
    (lambda tx, m: repo.update_model(tx, m, {"prices": [
        {"effective_from": "2027-01-01T00:00:00Z", "deployment": "nope"}]}, now=NOW),
     NotFound, "deployment 'nope'"),
    (lambda tx, m: repo.update_model(tx, m, {"price": {"input_per_million": "-1"}}, now=NOW),
     Invalid, "'-1' is negative"),
    (lambda tx, m: repo.update_model(tx, m, {"prices": [
        {"effective_from": "10/12/2026", "input_per_million": "1"}]}, now=NOW),
     Invalid, "not a time in a known format"),
])
async def test_bad_input_is_refused_and_nothing_is_written(db: Database, call: Any, error: type,
                                                          says: str) -> None:
    model_id = await _setup(db)
    rows, start = await _rows(db), await _revision(db)
    with pytest.raises(error, match=re.escape(says)) as caught:
        async with db.transaction() as tx:
            await call(tx, model_id)
    if isinstance(caught.value, Invalid):
        assert caught.value.field in {"effective_from", "prices.1.effective_from", "price.input_per_million",
                                      "prices.0.effective_from"}
    assert (await _rows(db), await _revision(db)) == (rows, start)


async def test_prices_that_have_started_cannot_be_deleted(db: Database) -> None:
    model_id = await _setup(db)
    async with db.read() as tx:
        history = await repo.list_prices(tx, model_id)
    for entry in history:
        if entry.effective_from is None:
            with pytest.raises(Conflict, match="history"):
                async with db.transaction() as tx:
                    await repo.delete_price(tx, model_id, entry.id, now=NOW)
    change = next(p for p in history if p.effective_from is not None)
    with pytest.raises(Conflict, match="history"):  # once its time has come
        async with db.transaction() as tx:
            await repo.delete_price(tx, model_id, change.id, now=LATER)
    async with db.transaction() as tx:  # another model's price id is not this model's
        other = await repo.create_model(tx, {"name": "other", "deployment": "sim"})
    with pytest.raises(NotFound):
        async with db.transaction() as tx:
            await repo.delete_price(tx, other.id, change.id, now=NOW)


async def test_a_priced_deployment_stays_and_a_deleted_model_takes_its_prices(db: Database) -> None:
    model_id = await _setup(db)
    async with db.read() as tx:
        spot = await repo.get_deployment_by_name(tx, "spot")
    with pytest.raises(Conflict, match="has prices of model.s. 'chat'"):
        async with db.transaction() as tx:
            await repo.delete_deployment(tx, spot.id)
    async with db.transaction() as tx:
        await repo.delete_model(tx, model_id)
        await repo.delete_deployment(tx, spot.id)
    assert await _rows(db) == 0


def _file(price_line: str, prices: str) -> PlatformSpec:
    text = f"""\
deployments:
  - {{name: sim, engine: simulator, profile: test-fast, served_model: m}}
  - {{name: spot, engine: simulator, profile: test-fast, served_model: m}}
models:
  - name: chat
    deployment: sim
    {price_line}
    prices:
{prices}
"""
    return PlatformSpec.model_validate(yaml.safe_load(text))


PRICE = 'price: {input_per_million: "0.60", output_per_million: "0.80"}'
SCHEDULED = ('      - {effective_from: "2999-01-01T00:00:00Z", input_per_million: "0.5"}\n'
             '      - {deployment: spot, input_per_million: "0.3"}\n')


async def test_applying_prices_is_idempotent_and_a_changed_price_starts_when_applied(db: Database) -> None:
    first = await apply_platform(db, _file(PRICE, SCHEDULED))
    assert [c.line() for c in first.changes][-1] == "+ model chat"
    assert (await apply_platform(db, _file(PRICE, SCHEDULED))).changes == ()
    # The same prices written differently are the same prices.
    same = _file(PRICE.replace('"0.60"', "0.6"), SCHEDULED.replace('"0.3"', '"0.30"'))
    assert (await apply_platform(db, same)).changes == ()
    changed = await apply_platform(db, _file(PRICE.replace('"0.60"', '"0.65"'), SCHEDULED))
    assert [c.line() for c in changed.changes] == ["~ model chat (price)"]
    assert (await apply_platform(db, _file(PRICE.replace('"0.60"', '"0.65"'), SCHEDULED))).changes == ()
    async with db.read() as tx:
        history = (await repo.get_model_by_name(tx, "chat")).prices
    assert [(p.deployment, p.effective_from is None, p.input_per_million) for p in history] == [
        (None, True, "0.60"), (None, False, "0.65"), (None, False, "0.5"), ("spot", True, "0.3")]
    dropped = await apply_platform(db, _file(PRICE.replace('"0.60"', '"0.65"'), SCHEDULED.split("\n")[1]
                                             + "\n"))
    assert [c.line() for c in dropped.changes] == ["~ model chat (prices)"]
    async with db.read() as tx:
        page = await repo.list_audit(tx, limit=100)
    updates = [e for e in page.items if e.action == "model.update"]
    assert len(updates) == 2 and updates[0].before["prices"] != updates[0].after["prices"]
