"""Prices as operators write them, and a model's price schedule: validated, compared, synced. No I/O.

What the platform file (and the admin API, whose bodies are the file's specs) takes::

    models:
      - name: llama-70b
        deployment: llama-70b
        price:                      # from the beginning (until the first entry of prices:)
          input_per_million: "0.60"           # decimal text (or a number), platform currency
          output_per_million: "0.80"
          cached_input_per_million: "0.06"   # optional: prompt tokens the engine's cache served
          batch_discount_percent: 50          # optional: off for batch requests (0-100)
        prices:                     # changes, each from its instant (``config.spec``)
          - {effective_from: "2026-12-10T00:00:00Z", input_per_million: "0.50", output_per_million: "0.70"}
          - {effective_from: 2027-01-01, deployment: llama-70b-spot, input_per_million: "0.30",
             output_per_million: "0.40"}

``PriceSpec`` validates one price (``price_of`` turns it into the exact ``platform.prices.Price``);
``parse_instant`` one ``effective_from``. A schedule is a list of ``Entry`` — (deployment or None
for the model's own price, start or None for "from the beginning", the price) — and this module
answers the questions every writer of schedules asks:

* ``clashes``: two entries of one scope starting at the same instant;
* ``view``: what a schedule means from ``now`` on — the price in force per scope, and the
  changes still to come. Two schedules with the same view charge every future request alike;
  ``config.apply`` compares views, so a file that says the same as the store changes nothing;
* ``plan_sync``: the rows to delete and add so a stored schedule has a wanted one's view
  *without rewriting history*: a different price in force becomes a new entry starting now;
  entries that started before now stay as they were (unless the wanted schedule has no price
  in force in that scope at all: then that scope's past entries go, and the audit log keeps
  them), and scheduled changes are matched one for one;
* ``model_prices``: the schedule as the snapshot's ``ModelPrices``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from inferenceops.platform.policy import NANOS
from inferenceops.platform.prices import WHOLE, ModelPrices, Price, PriceSchedule

#: A price per million tokens is below a billion currency units, to a nano-unit: it fits 64 bits.
MAX_AMOUNT = Decimal(10) ** 9
DECIMAL_PLACES = 9
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
TIME_EXAMPLE = "2026-12-10T00:00:00Z"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:\d{2})?$")


def parse_decimal(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"{what} must be decimal text such as \"0.15\", not {type(value).__name__}")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number: write {what} as decimal text, e.g. \"0.15\"") \
            from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _amount(value: object) -> Decimal:
    """A price per million tokens: a number, 0 or more, below a billion, to nine decimal places."""
    number = parse_decimal(value, "a price per million tokens")
    if number < 0:
        raise ValueError(f"{value!r} is negative: a price is 0 or more")
    if number >= MAX_AMOUNT:
        raise ValueError(f"{value!r} is too large: a price per million tokens is below 1000000000")
    if number != number.quantize(Decimal(1).scaleb(-DECIMAL_PLACES)):
        raise ValueError(f"{value!r} has more than {DECIMAL_PLACES} decimal places (a nano-unit "
                         "is the smallest amount)")
    return number


def _percent(value: object) -> Decimal:
    number = parse_decimal(value, "a discount in percent")
    if not 0 <= number <= 100:
        raise ValueError(f"{value!r} is not a percentage: the batch discount is from 0 to 100")
    if number != number.quantize(Decimal("0.01")):
        raise ValueError(f"{value!r} has more than 2 decimal places (a hundredth of a percent)")
    return number


def parse_instant(value: object) -> datetime:
    """When a price starts: an RFC 3339 time with its UTC offset (``2026-12-10T00:00:00Z``,
    ``…T01:00:00+01:00``) or a date (midnight UTC), from 1970 to 9999 in UTC; returned in UTC.

    A YAML file's unquoted times and dates arrive as ``datetime``/``date``; numbers (epoch
    seconds?) and other text are refused with a message that shows the format.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time(), UTC)
    elif isinstance(value, str) and (_DATE.match(value.strip()) or _DATETIME.match(value.strip())):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid time ({exc}); e.g. {TIME_EXAMPLE}") from None
        if _DATE.match(text):
            moment = moment.replace(tzinfo=UTC)
    else:
        shown = repr(value) if isinstance(value, str | int | float) else type(value).__name__
        raise ValueError(f"{shown} is not a time in a known format: write an RFC 3339 time with "
                         f"its UTC offset, e.g. {TIME_EXAMPLE}, or a date, e.g. 2026-12-10 "
                         "(midnight UTC)")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{value!r} has no UTC offset: add Z for UTC (e.g. {TIME_EXAMPLE}) or "
                         "+HH:MM")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is outside the calendar once converted to UTC") from None
    if moment < EARLIEST:
        raise ValueError(f"{value!r} is before 1970-01-01T00:00:00Z; a price from the beginning "
                         "has no effective_from")
    return moment


Amount = Annotated[Decimal, BeforeValidator(_amount),
                   Field(ge=0, max_digits=18, decimal_places=DECIMAL_PLACES)]
Percent = Annotated[Decimal, BeforeValidator(_percent), Field(ge=0, le=100, decimal_places=2)]
#: An ``effective_from``: an aware time, in UTC (``parse_instant``).
Instant = Annotated[datetime, BeforeValidator(parse_instant)]


class PriceSpec(BaseModel):
    """Prices per million tokens, in the platform currency, and the batch discount."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: Amount = Decimal(0)
    output_per_million: Amount = Decimal(0)
    cached_input_per_million: Amount | None = Field(
        None, description="prompt tokens the engine's prefix cache served; null: as input")
    batch_discount_percent: Percent = Field(
        Decimal(0), description="percent off for batch requests (0-100)")


#: The fields of ``PriceSpec``: what a price *is*, whatever else an entry says.
PRICE_FIELDS = frozenset(PriceSpec.model_fields)


def price_spec(values: BaseModel) -> PriceSpec:
    """The price of any spec holding ``PriceSpec``'s fields (a scheduled entry, a body)."""
    return PriceSpec.model_validate(values.model_dump(include=set(PRICE_FIELDS)))


def price_of(spec: PriceSpec) -> Price:
    """The exact ``Price``: nano-units per million tokens, the discount in basis points."""
    def nanos(amount: Decimal) -> int:
        return int(amount * NANOS)
    cached = spec.cached_input_per_million
    return Price(nanos(spec.input_per_million), nanos(spec.output_per_million),
                 None if cached is None else nanos(cached),
                 int(spec.batch_discount_percent * WHOLE / 100))


@dataclass(frozen=True, slots=True)
class Entry:
    """One price of a schedule: the deployment it is for (None: the model's own), when it starts
    (None: from the beginning), and the price."""

    deployment: str | None
    effective_from: datetime | None
    price: PriceSpec

    @property
    def start(self) -> float:
        return -math.inf if self.effective_from is None else self.effective_from.timestamp()


def clashes(entries: Sequence[tuple[Any, Entry]]) -> list[tuple[Any, str]]:
    """(where, message) for each entry that starts when an earlier one of its scope does."""
    seen: dict[tuple[str | None, float], Entry] = {}
    found: list[tuple[Any, str]] = []
    for where, entry in entries:
        slot = (entry.deployment, entry.start)
        if slot in seen:
            scope = f"deployment {entry.deployment!r}" if entry.deployment else "the model"
            when = ("from the beginning" if entry.effective_from is None
                    else f"at {entry.effective_from.isoformat()}")
            found.append((where, f"a second price for {scope} {when}: each price of a scope "
                          "starts at its own time; remove one or change its effective_from"))
        seen.setdefault(slot, entry)
    return found


def _in_force(entries: Iterable[Entry], now: float) -> Entry | None:
    started = [e for e in entries if e.start <= now]
    return max(started, key=lambda e: e.start) if started else None


def _scopes(*groups: Iterable[Entry]) -> list[str | None]:
    found = {e.deployment for group in groups for e in group}
    return sorted(found, key=lambda d: (d is not None, d or ""))


@dataclass(frozen=True, slots=True)
class View:
    """What a schedule charges from ``now`` on: per scope the price in force, and what is to come."""

    in_force: dict[str | None, PriceSpec]
    scheduled: frozenset[tuple[str | None, datetime, PriceSpec]]

    def changed(self, other: View) -> tuple[str, ...]:
        """Which of ``price`` (the model's own in force) and ``prices`` (the rest) differ."""
        fields = []
        if self.in_force.get(None) != other.in_force.get(None):
            fields.append("price")
        ours = {k: v for k, v in self.in_force.items() if k is not None}
        theirs = {k: v for k, v in other.in_force.items() if k is not None}
        if ours != theirs or self.scheduled != other.scheduled:
            fields.append("prices")
        return tuple(fields)


def as_of(entries: Sequence[Entry], now: datetime) -> tuple[PriceSpec | None, list[Entry]]:
    """A schedule as the admin API shows it: (the model's own price in force at ``now``, the
    deployments' entries in force and every entry still to come, in order of start)."""
    at = now.timestamp()
    model = _in_force((e for e in entries if e.deployment is None), at)
    shown = [found for scope in _scopes(entries) if scope is not None
             for found in [_in_force((e for e in entries if e.deployment == scope), at)]
             if found is not None]
    shown += sorted((e for e in entries if e.start > at), key=lambda e: (e.start, e.deployment or ""))
    return (None if model is None else model.price), shown


def view(entries: Sequence[Entry], now: datetime) -> View:
    at = now.timestamp()
    in_force: dict[str | None, PriceSpec] = {}
    for scope in _scopes(entries):
        current = _in_force((e for e in entries if e.deployment == scope), at)
        if current is not None:
            in_force[scope] = current.price
    scheduled = frozenset((e.deployment, e.effective_from, e.price) for e in entries
                          if e.effective_from is not None and e.start > at)
    return View(in_force, scheduled)


def plan_sync(stored: Sequence[tuple[str, Entry]], wanted: Sequence[Entry],
              now: datetime) -> tuple[list[str], list[Entry]]:
    """(ids of stored entries to delete, entries to add) so ``stored`` gets ``wanted``'s view.

    Per scope: a different price in force (or a first one) is added as an entry starting ``now``
    (replacing a stored one starting exactly then): a change applies from when it is made. No
    price in force wanted deletes the scope's entries that have started; entries still to come
    are matched by start and price. Started entries are otherwise left alone: they are history.
    """
    at = now.timestamp()
    delete: list[str] = []
    add: list[Entry] = []
    for scope in _scopes((e for _, e in stored), wanted):
        ours = [(i, e) for i, e in stored if e.deployment == scope]
        theirs = [e for e in wanted if e.deployment == scope]
        have = _in_force((e for _, e in ours), at)
        want = _in_force(theirs, at)
        if want is None:
            delete += [i for i, e in ours if e.start <= at]
        elif have is None or have.price != want.price:
            delete += [i for i, e in ours if e.start == at]
            add.append(Entry(scope, now, want.price))
        to_come = {(e.effective_from, e.price) for e in theirs if e.start > at}
        kept = set()
        for i, e in ours:
            if e.start > at:
                if (e.effective_from, e.price) in to_come and (e.effective_from, e.price) not in kept:
                    kept.add((e.effective_from, e.price))
                else:
                    delete.append(i)
        add += [Entry(scope, when, price) for when, price in sorted(to_come - kept, key=_by_time)]
    return delete, add


def _by_time(item: tuple[datetime | None, PriceSpec]) -> float:
    return -math.inf if item[0] is None else item[0].timestamp()


def model_prices(entries: Iterable[Entry]) -> ModelPrices:
    """The schedule as the snapshot's ``ModelPrices`` (each price exact in nano-units)."""
    by_scope: dict[str | None, list[tuple[float | None, Price]]] = {}
    for e in entries:
        start = None if e.effective_from is None else e.effective_from.timestamp()
        by_scope.setdefault(e.deployment, []).append((start, price_of(e.price)))
    return ModelPrices(PriceSchedule(by_scope.pop(None, [])),
                       {name: PriceSchedule(found) for name, found in by_scope.items()
                        if name is not None})
