"""What a request costs: a model's prices over time, and the exact arithmetic. Pure data, no I/O.

A ``Price`` holds amounts in nano-units (1e-9) of the platform currency **per million
tokens** — input, output and (optionally) cached input — and a batch discount in basis
points (hundredths of a percent). ``Price.cost`` multiplies whole numbers and divides once,
rounding up: exact for any price with at most nine decimal places per million tokens, and
never a nano-unit under what the tokens cost.

A ``PriceSchedule`` is one scope's prices over time: entries with the instant each starts
(``None``: from the beginning), sorted. ``at(when)`` is the latest entry that started at or
before ``when`` — so a change scheduled for 12:00 prices the requests that start from 12:00,
and a request that started at 11:59 keeps the earlier price however long it runs.

``ModelPrices`` is a model's schedule plus one per deployment: a deployment's price, once one
is in force, overrides the model's for the requests that deployment serves.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

MILLION = 1_000_000
#: 100 % in basis points: a batch discount is 0 … 10_000.
WHOLE = 10_000


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass(frozen=True, slots=True)
class Price:
    """Prices per million tokens in nano-units; ``cached_input`` None: cached tokens cost input."""

    input_per_million: int = 0
    output_per_million: int = 0
    cached_input_per_million: int | None = None
    batch_discount_bp: int = 0

    @classmethod
    def per_token(cls, input: int = 0, output: int = 0) -> Price:
        """A price given in nano-units per token (whole numbers)."""
        return cls(input * MILLION, output * MILLION)

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, *,
             batch: bool = False) -> int:
        """Nano-units for these tokens, rounded up once; ``cached_tokens`` are part of the prompt.

        ``batch``: a batch-class request, which gets ``batch_discount_bp`` off (interactive and
        background requests pay the full price).
        """
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_price = self.input_per_million if self.cached_input_per_million is None \
            else self.cached_input_per_million
        scaled = ((prompt_tokens - cached) * self.input_per_million + cached * cached_price
                  + completion_tokens * self.output_per_million)
        if batch and self.batch_discount_bp:
            return _ceil_div(scaled * (WHOLE - self.batch_discount_bp), WHOLE * MILLION)
        return _ceil_div(scaled, MILLION)


class PriceSchedule:
    """One scope's prices by start instant (epoch seconds; None: from the beginning). Immutable."""

    __slots__ = ("_starts", "_prices")

    def __init__(self, entries: Iterable[tuple[float | None, Price]]) -> None:
        ordered = sorted(((-math.inf if start is None else start, price) for start, price in entries),
                         key=lambda entry: entry[0])
        starts = [start for start, _ in ordered]
        if len(set(starts)) != len(starts):
            raise ValueError("two prices of one schedule start at the same instant")
        self._starts: tuple[float, ...] = tuple(starts)
        self._prices: tuple[Price, ...] = tuple(price for _, price in ordered)

    def at(self, when: float) -> Price | None:
        """The latest price that started at or before ``when``; None before the first one."""
        index = bisect.bisect_right(self._starts, when) - 1
        return self._prices[index] if index >= 0 else None

    def entries(self) -> Iterator[tuple[float | None, Price]]:
        for start, price in zip(self._starts, self._prices, strict=True):
            yield (None if start == -math.inf else start), price

    def __len__(self) -> int:
        return len(self._prices)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PriceSchedule) and list(self.entries()) == list(other.entries())

    def __hash__(self) -> int:
        return hash(tuple(self.entries()))

    def __repr__(self) -> str:
        return f"PriceSchedule({list(self.entries())!r})"


class ModelPrices:
    """A model's schedule and its per-deployment schedules (which override it when in force)."""

    __slots__ = ("model", "deployments")

    def __init__(self, model: PriceSchedule | None = None,
                 deployments: Mapping[str, PriceSchedule] | None = None) -> None:
        self.model = model if model is not None else PriceSchedule(())
        self.deployments: Mapping[str, PriceSchedule] = MappingProxyType(
            {name: schedule for name, schedule in (deployments or {}).items() if len(schedule)})

    @classmethod
    def constant(cls, price: Price) -> ModelPrices:
        """One price from the beginning, for every deployment."""
        return cls(PriceSchedule([(None, price)]))

    def at(self, when: float, deployment: str | None = None) -> Price | None:
        """The price of a request that started at ``when`` and was served by ``deployment``."""
        if deployment is not None:
            schedule = self.deployments.get(deployment)
            if schedule is not None:
                price = schedule.at(when)
                if price is not None:
                    return price
        return self.model.at(when)

    def in_force(self, when: float) -> Iterator[Price]:
        """Every price a request starting at ``when`` may pay, whichever deployment serves it."""
        price = self.model.at(when)
        if price is not None:
            yield price
        for schedule in self.deployments.values():
            price = schedule.at(when)
            if price is not None:
                yield price

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ModelPrices) and self.model == other.model
                and dict(self.deployments) == dict(other.deployments))

    def __hash__(self) -> int:
        return hash((self.model, tuple(sorted(self.deployments.items()))))

    def __repr__(self) -> str:
        return f"ModelPrices({self.model!r}, {dict(self.deployments)!r})"
