"""Models in the platform file: a public name on a deployment, with aliases, prices and routes.

    models:
      - name: llama
        deployment: llama
        aliases: [llama-3.1]
        price: {input_per_million: "0.20", output_per_million: "0.60"}
        prices:                         # changes, each from its effective_from
          - {effective_from: 2026-12-10, input_per_million: "0.15", output_per_million: "0.45"}

A model checks its own fields, its canary shares and its price schedule (two prices of one
scope from the same instant); what needs the whole file (the deployment it names, names and
aliases unique across models, its routes) is checked in the package (``_cross_check``). Pure
models, no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from inferenceops.config.spec.base import Name, _Strict
from inferenceops.config.spec.routes import (
    MAX_CANARIES,
    MAX_FALLBACKS,
    CanarySpec,
    FallbackSpec,
    share_problems,
)
from inferenceops.metering.prices import Entry, Instant, PriceSpec, clashes, price_spec


class ScheduledPriceSpec(PriceSpec):
    """A price from ``effective_from`` on, for the model or for the requests one deployment serves."""

    deployment: Name | None = Field(None, description="only for requests this deployment serves "
                                    "(it overrides the model's price while in force)")
    effective_from: Instant | None = Field(
        None, validate_default=True, description="when it starts: an RFC 3339 time with its "
        "offset (2026-12-10T00:00:00Z) or a date (midnight UTC); a deployment's price without one "
        "applies from the beginning")

    @field_validator("effective_from")
    @classmethod
    def _starts(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None and info.data.get("deployment") is None:
            raise ValueError("is required: when this price starts (e.g. 2026-12-10T00:00:00Z); "
                             "the model's price from the beginning is 'price:'")
        return value

    def entry(self) -> Entry:
        return Entry(self.deployment, self.effective_from, price_spec(self))


class ModelSpec(_Strict):
    name: Name
    deployment: Name
    aliases: list[Name] = []
    type: Literal["chat", "embedding"] = "chat"
    price: PriceSpec | None = Field(None, description="the price from the beginning (in the admin "
                                    "API's answers: the model's own price in force now)")
    prices: list[ScheduledPriceSpec] = Field(
        [], max_length=1000, description="price changes, each from its effective_from, and prices "
        "per deployment (in the admin API's answers: those in force and those to come; the whole "
        "history is /models/{id}/prices)")
    max_output_tokens: int = Field(4096, ge=1, le=10_000_000, description="output tokens "
                                   "reserved for a request that does not set max_tokens")
    canary: list[CanarySpec] = Field([], max_length=MAX_CANARIES, description=(
        "other deployments that get a share of the model's requests; the primary keeps the rest"))
    fallbacks: list[FallbackSpec] = Field([], max_length=MAX_FALLBACKS, description=(
        "in order: where a request goes when the chosen deployment could not take it "
        "(docs/routing.md says exactly when)"))

    @model_validator(mode="after")
    def _shares(self) -> ModelSpec:
        problem = share_problems(self.canary)
        if problem is not None:
            raise ValueError(problem)
        return self

    def price_entries(self) -> list[Entry]:
        """The whole schedule: ``price`` from the beginning, then ``prices`` as written."""
        first = [] if self.price is None else [Entry(None, None, price_spec(self.price))]
        return first + [p.entry() for p in self.prices]

    def price_problems(self) -> list[tuple[list[Any], str]]:
        """Two prices of one scope starting at the same time: (location in the spec, message)."""
        located: list[tuple[Any, Entry]] = []
        if self.price is not None:
            located.append((["price"], Entry(None, None, price_spec(self.price))))
        located += [(["prices", j, "effective_from"], p.entry()) for j, p in enumerate(self.prices)]
        return clashes(located)
