"""What a self-hosted deployment costs by the hour, as operators write it. No I/O.

A self-hosted deployment costs its GPUs whether anyone uses them or not. The platform file
(and the admin API, whose bodies are the file's specs) declares it on the deployment::

    deployments:
      - name: llama-70b
        engine: openai
        replicas: [{url: http://gpu-1:8000/v1}, {url: http://gpu-2:8000/v1}]
        gpu_cost:
          gpus: 4                        # all replicas together
          cost_per_gpu_hour: "2.40"      # decimal text (or a number), platform currency
          since: 2026-12-01              # optional: costed from then (default: the deployment's creation)
          changes:                       # optional: from each effective_from on
            - {effective_from: 2027-01-01, gpus: 8, cost_per_gpu_hour: "2.10"}
          cost_model:                    # optional: how engine work is weighed (metering.chargeback)
            prefill: 1                   # per prompt token the engine computed
            cached: 0.1                  # per prompt token its prefix cache served
            decode: 4                    # per generated token
            capacity_per_hour: 40000000  # work it does in an hour when saturated (0: not calibrated)

``GpuCostSpec.schedule`` turns it into exact hourly costs (``GpuSchedule``) for the chargeback
report (``metering.chargeback_report``). Amounts are exact decimals, as prices are
(``metering.prices``); nothing is rounded before a report's last step.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from inferenceops.metering.chargeback import CostModel
from inferenceops.metering.prices import Amount, Instant, parse_decimal

#: Weights are small numbers given to a millionth; capacity a whole number of work units.
MAX_WEIGHT = Decimal(10) ** 6
MAX_CAPACITY = 10**15
MAX_GPUS = 1_000_000


def _weight(value: object) -> Decimal:
    number = parse_decimal(value, "a cost-model weight")
    if not 0 <= number <= MAX_WEIGHT:
        raise ValueError(f"{value!r} is not a weight: give a number from 0 to 1000000")
    if number != number.quantize(Decimal("0.000001")):
        raise ValueError(f"{value!r} has more than 6 decimal places")
    return number


Weight = Annotated[Decimal, BeforeValidator(_weight)]


class CostModelSpec(BaseModel):
    """How much engine work a token is, and how much work an hour of the deployment can do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefill: Weight = Field(Decimal(1), description="work per prompt token the engine computed")
    cached: Weight = Field(Decimal("0.1"), description="work per prompt token its prefix cache "
                           "served")
    decode: Weight = Field(Decimal(4), description="work per generated token")
    capacity_per_hour: int = Field(0, ge=0, le=MAX_CAPACITY, description="work the deployment "
                                   "does in an hour when saturated; 0 = not calibrated (no idle "
                                   "cost is reported while anyone uses it)")

    def model(self) -> CostModel:
        return CostModel(Fraction(self.prefill), Fraction(self.cached), Fraction(self.decode),
                         Fraction(self.capacity_per_hour))


class GpuCostChange(BaseModel):
    """From ``effective_from`` on, the deployment has ``gpus`` at ``cost_per_gpu_hour``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    effective_from: Instant = Field(description="an RFC 3339 time with its offset or a date "
                                    "(midnight UTC)")
    gpus: int = Field(ge=0, le=MAX_GPUS)
    cost_per_gpu_hour: Amount


class GpuCostSpec(BaseModel):
    """A deployment's GPUs, their hourly cost and its cost model (see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: int = Field(ge=0, le=MAX_GPUS, description="GPUs of all its replicas together")
    cost_per_gpu_hour: Amount = Field(description="per GPU and hour, in the platform currency")
    since: Instant | None = Field(None, description="costed from this time on (default: from the "
                                  "deployment's creation)")
    changes: list[GpuCostChange] = Field([], max_length=1000, description="later GPU counts or "
                                         "costs, each from its effective_from")
    cost_model: CostModelSpec = CostModelSpec()

    @model_validator(mode="after")
    def _ordered(self) -> GpuCostSpec:
        starts = [c.effective_from for c in self.changes]
        for index, start in enumerate(starts):
            if start in starts[:index]:
                raise ValueError(f"changes[{index}].effective_from: a second change at "
                                 f"{start.isoformat()}; each change starts at its own time")
            if self.since is not None and start <= self.since:
                raise ValueError(f"changes[{index}].effective_from: {start.isoformat()} is not "
                                 f"after since ({self.since.isoformat()})")
        return self

    def schedule(self, created: datetime | None = None) -> GpuSchedule:
        """The hourly costs from ``since`` (else ``created``; else always) on."""
        start = self.since or created
        steps = sorted((c.effective_from.timestamp(), _cents_per_hour(c.gpus, c.cost_per_gpu_hour))
                       for c in self.changes)
        return GpuSchedule(None if start is None else start.timestamp(),
                           _cents_per_hour(self.gpus, self.cost_per_gpu_hour),
                           tuple(s for s, _ in steps), tuple(c for _, c in steps),
                           self.cost_model.model())


def _cents_per_hour(gpus: int, cost_per_gpu_hour: Decimal) -> Fraction:
    return gpus * Fraction(cost_per_gpu_hour) * 100


@dataclass(frozen=True, slots=True)
class GpuSchedule:
    """A deployment's cost per hour over time, in exact cents, and its cost model."""

    start: float | None  # epoch seconds it is costed from (None: always)
    base_cents_per_hour: Fraction
    change_starts: tuple[float, ...]  # sorted
    change_cents_per_hour: tuple[Fraction, ...]
    cost_model: CostModel

    def cents(self, begin: float, end: float) -> Fraction:
        """What ``[begin, end)`` cost (epoch seconds, within one rate: an hour never spans a
        change that is not on the hour, else it is split at the change)."""
        if self.start is not None:
            begin = max(begin, self.start)
        if end <= begin:
            return Fraction(0)
        total = Fraction(0)
        cut = begin
        index = bisect.bisect_right(self.change_starts, cut)
        while cut < end:
            stop = self.change_starts[index] if index < len(self.change_starts) else end
            stop = min(stop, end)
            rate = (self.base_cents_per_hour if index == 0
                    else self.change_cents_per_hour[index - 1])
            total += rate * (Fraction(stop) - Fraction(cut)) / 3600
            cut = stop
            index += 1
        return total

    def rate_over(self, begin: float, end: float) -> Fraction | None:
        """The one rate (cents per hour) that holds over the costed part of ``[begin, end)``;
        0 when none of it is costed; None when a change falls inside it."""
        if self.start is not None:
            begin = max(begin, self.start)
        if end <= begin:
            return Fraction(0)
        index = bisect.bisect_right(self.change_starts, begin)
        if index < len(self.change_starts) and self.change_starts[index] < end:
            return None
        return self.base_cents_per_hour if index == 0 else self.change_cents_per_hour[index - 1]

    def costed_seconds(self, begin: float, end: float) -> Fraction:
        """How much of ``[begin, end)`` the deployment was costed for (after its start)."""
        if self.start is not None:
            begin = max(begin, self.start)
        return Fraction(max(0.0, end - begin)) if end > begin else Fraction(0)
