"""Admission policy: the rate limits, budgets, prices and team weights that apply. Pure data.

A ``Policy`` is part of the snapshot the data plane reads. It merges what the
platform YAML declares with what operators set through the admin API: where
both set the same thing for the same scope, the stricter one applies (the
smaller limit, the smaller budget, hard over soft), so adding a rule can only
tighten admission, never loosen it.

Money is held as integer nano-units of the platform currency (1e-9), so sums
are exact; ``to_nanos`` / ``from_nanos`` convert from and to decimal text. Each
model's prices are a schedule over time (``platform.prices``): a request is priced
at the entry in force when it started.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from functools import lru_cache
from types import MappingProxyType
from typing import Any, cast

from inferenceops.platform.guardrails import NO_GUARDRAILS, Guardrails

# Re-exported: prices are part of the policy (``platform.prices`` defines them).
from inferenceops.platform.prices import ModelPrices as ModelPrices
from inferenceops.platform.prices import Price as Price
from inferenceops.platform.retention import DEFAULT, Retention

NANOS = 1_000_000_000
#: The largest limit or budget (in nano-units) a ledger counts exactly: Redis's Lua computes in
#: doubles, exact to 2**53 — about 9 million currency units of budget per counter.
MAX_COUNTER = 2**53 - 1

#: ISO 4217 codes a budget or price may be given in (the platform uses exactly one of them).
CURRENCIES = frozenset({
    "AED", "AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "IDR",
    "ILS", "INR", "JPY", "KRW", "MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "SAR", "SEK", "SGD",
    "THB", "TRY", "TWD", "USD", "ZAR",
})


class Period(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    LIFETIME = "lifetime"


class Scope(enum.StrEnum):
    KEY = "key"
    TEAM = "team"
    MODEL = "model"
    TEAM_MODEL = "team_model"


def to_nanos(amount: str | int | float | Decimal) -> int:
    """Decimal money text → nano-units, rounded up (a price is never under-charged)."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"{amount!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not a finite number")
    return int((value * NANOS).to_integral_value(rounding=ROUND_CEILING))


def from_nanos(nanos: int) -> str:
    """Nano-units → plain decimal text without trailing zeros (``"12.5"``, ``"0"``).

    In integers (a report formats thousands of amounts; ``Decimal`` took most of the time)."""
    whole, part = divmod(abs(nanos), NANOS)
    sign = "-" if nanos < 0 else ""
    if not part:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{part:09d}".rstrip("0")


def period_start(period: Period, now: float) -> float:
    """Epoch seconds at which the UTC period containing ``now`` began (0 for ``lifetime``)."""
    if period is Period.LIFETIME:
        return 0.0
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAILY:
        return day.timestamp()
    if period is Period.WEEKLY:
        return (day - timedelta(days=day.weekday())).timestamp()
    return day.replace(day=1).timestamp()


def period_window(period: Period, now: float) -> tuple[str, float | None]:
    """(id, end) of the UTC period containing ``now``: ``("m2026-11", <epoch of Dec 1>)``.

    Weeks start on Monday (ISO weeks). ``lifetime`` has no end. Every request with a
    budget asks (admission's plan): each window is worked out once per UTC day (POSIX
    days are exactly 86,400 s) and remembered, not rebuilt from datetimes every time.
    The answer depends on ``now`` only through its UTC day, ``int(now // DAY_S)``: callers
    may keep it for as long as that stays the same.
    """
    if period is Period.LIFETIME:
        return "life", None
    return _window_of_day(period, int(now // DAY_S))


#: Seconds per UTC day; every period boundary is a multiple of it (POSIX time has no leap seconds).
DAY_S = 86400


@lru_cache(maxsize=32)
def _window_of_day(period: Period, day: int) -> tuple[str, float]:
    """The (id, end) of ``period`` around UTC day number ``day`` (days since the epoch)."""
    start = datetime.fromtimestamp(day * DAY_S, UTC)
    if period is Period.DAILY:
        return f"d{start:%Y-%m-%d}", (start + timedelta(days=1)).timestamp()
    if period is Period.WEEKLY:
        monday = start - timedelta(days=start.weekday())
        year, week, _ = monday.isocalendar()
        return f"w{year}-W{week:02d}", (monday + timedelta(days=7)).timestamp()
    first = start.replace(day=1)
    following = first.replace(year=first.year + 1, month=1) if first.month == 12 \
        else first.replace(month=first.month + 1)
    return f"m{first:%Y-%m}", following.timestamp()


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Per-minute request and token limits and a concurrency cap; None = not limited."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None

    def tighten(self, other: RateLimit) -> RateLimit:
        return RateLimit(_least(self.rpm, other.rpm), _least(self.tpm, other.tpm),
                         _least(self.concurrency, other.concurrency))


@dataclass(frozen=True, slots=True)
class Budget:
    """Money a team or key may spend per period; hard blocks, soft only alerts."""

    limit: int  # nano-units
    period: Period
    hard: bool = True

    def tighten(self, other: Budget) -> Budget:
        return Budget(min(self.limit, other.limit), self.period, self.hard or other.hard)


@dataclass(frozen=True, slots=True)
class LimitRule:
    """A rate limit for one scope. ``subject`` is a key id, team id, model name, or
    ``(team id, model name)``; ``"*"`` for key/team means "each key/team by itself"."""

    scope: Scope
    subject: str | tuple[str, str]
    limit: RateLimit


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """A budget of one key or team; ``"*"`` gives every key/team its own budget of this size."""

    scope: Scope  # KEY or TEAM
    subject: str
    budget: Budget


class Policy:
    """Every admission rule, indexed for dict lookups on the hot path. Immutable.

    ``memo`` is the one mutable part, and holds nothing of the policy's own: readers keep
    there what they derive from this policy (admission's plan keeps which rules apply to a
    key and model). As the rules never change, nothing kept there goes stale; a changed
    rule comes as a new ``Policy`` (the next snapshot), with an empty memo. Each reader
    bounds what it keeps.
    """

    __slots__ = ("currency", "_limits", "_budgets", "_weights", "prices", "team_names", "empty",
                 "memo", "guardrails", "retention")

    def __init__(self, *, currency: str = "USD", limits: Iterable[LimitRule] = (),
                 budgets: Iterable[BudgetRule] = (), team_weights: Mapping[str, int] | None = None,
                 prices: Mapping[str, ModelPrices | Price] | None = None,
                 team_names: Mapping[str, str] | None = None,
                 guardrails: Guardrails | None = None,
                 retention: Mapping[str, Retention] | None = None) -> None:
        merged: dict[tuple[Scope, object], RateLimit] = {}
        for rule in limits:
            at = (rule.scope, rule.subject)
            merged[at] = merged[at].tighten(rule.limit) if at in merged else rule.limit
        budgets_by: dict[tuple[Scope, str], dict[Period, Budget]] = {}
        for budget_rule in budgets:
            per = budgets_by.setdefault((budget_rule.scope, budget_rule.subject), {})
            period = budget_rule.budget.period
            per[period] = per[period].tighten(budget_rule.budget) if period in per else budget_rule.budget
        self.currency = currency
        self._limits: Mapping[tuple[Scope, object], RateLimit] = MappingProxyType(merged)
        self._budgets: Mapping[tuple[Scope, str], tuple[Budget, ...]] = MappingProxyType(
            {at: tuple(per.values()) for at, per in budgets_by.items()})
        self._weights: Mapping[str, int] = MappingProxyType(dict(team_weights or {}))
        self.prices: Mapping[str, ModelPrices] = MappingProxyType({
            model: ModelPrices.constant(p) if isinstance(p, Price) else p
            for model, p in (prices or {}).items()})
        self.team_names: Mapping[str, str] = MappingProxyType(dict(team_names or {}))
        self.empty = not merged and not budgets_by
        self.memo: dict[Hashable, Any] = {}
        #: The guardrail policies and where they are attached (``platform.guardrails``).
        self.guardrails = guardrails if guardrails is not None else NO_GUARDRAILS
        #: Teams whose body retention is not the default, by id (``platform.retention``).
        self.retention: Mapping[str, Retention] = MappingProxyType(
            {team: r for team, r in (retention or {}).items() if r != DEFAULT})

    def limit(self, scope: Scope, subject: str | tuple[str, str]) -> RateLimit | None:
        """The limit for exactly this subject, else the ``"*"`` default of key/team scope."""
        found = self._limits.get((scope, subject))
        if found is None and scope in (Scope.KEY, Scope.TEAM):
            found = self._limits.get((scope, "*"))
        return found

    def budgets(self, scope: Scope, subject: str) -> tuple[Budget, ...]:
        """The budgets of exactly this key/team, else the ``"*"`` default (each by itself)."""
        found = self._budgets.get((scope, subject))
        return found if found is not None else self._budgets.get((scope, "*"), ())

    def budget_rules(self) -> Iterable[tuple[Scope, str, Budget]]:
        """Every budget: (scope, subject — ``"*"`` for the default —, budget)."""
        for (scope, subject), budgets in self._budgets.items():
            for budget in budgets:
                yield scope, subject, budget

    def limit_rules(self) -> Iterable[tuple[Scope, object, RateLimit]]:
        """Every rate limit: (scope, subject — ``"*"``, a name, or a (team, model) pair —, limit)."""
        for (scope, subject), limit in self._limits.items():
            yield scope, subject, limit

    def weight(self, team_id: str | None) -> int:
        return self._weights.get(team_id, 1) if team_id is not None else 1

    def price(self, model: str, at: float, deployment: str | None = None) -> Price | None:
        """The price of a request to ``model`` that started at ``at`` (epoch seconds) and was
        served by ``deployment`` (None: the model's own price); None when it is not priced."""
        prices = self.prices.get(model)
        return prices.at(at, deployment) if prices is not None else None

    def max_cost(self, model: str, at: float, prompt_tokens: int, completion_tokens: int) -> int | None:
        """The most these tokens may cost in a request starting at ``at``, whichever deployment
        serves it (no cache hits, no discount); None when no price is in force."""
        prices = self.prices.get(model)
        if prices is None:
            return None
        if not prices.deployments:  # the usual case: the model's own price is the only one
            price = prices.model.at(at)
            return None if price is None else price.cost(prompt_tokens, completion_tokens)
        costs = [p.cost(prompt_tokens, completion_tokens) for p in prices.in_force(at)]
        return max(costs) if costs else None

    def describe(self, scope: Scope, subject: str | tuple[str, str]) -> str:
        """Human name of a scope for error messages: ``team 'ml'``, ``model 'demo-chat'``."""
        if scope is Scope.KEY:
            return "this API key"
        if scope is Scope.TEAM:
            return f"team {self.team_names.get(str(subject), subject)!r}"
        if scope is Scope.MODEL:
            return f"model {subject!r}"
        # Only TEAM_MODEL is left, and its subject is always a (team id, model name) pair (LimitRule).
        team, model = cast(tuple[str, str], subject)
        return f"team {self.team_names.get(team, team)!r} on model {model!r}"


def _least(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


EMPTY_POLICY = Policy()
