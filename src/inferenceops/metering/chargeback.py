"""GPU-time chargeback: a self-hosted deployment's cost shared among teams, to the cent.

A self-hosted deployment costs GPU-hours whether or not anyone uses it
(``metering.gpu_costs``: GPUs × cost per GPU-hour, changing over time). Each request
caused *engine work*, weighted per deployment by a cost model (``CostModel``):

    work = prefill × (prompt − cached) + cached × cached_tokens + decode × completion

(prefix-cache hits are cheaper than prefilling; decoding a token usually costs
more than prefilling one). ``capacity`` is the work the deployment can do per
hour when saturated.

**Showback**, hour by hour: a team's share of the hour's cost is ``cost × its work /
capacity``; what no team's work accounts for is *idle* cost. When the teams' work
exceeds the capacity the deployment was busier than calibrated: the hour's whole cost
is shared in proportion to work and idle is zero (likewise when the capacity is not
calibrated, 0). An hour nobody used is idle entirely.

**Chargeback**, over the whole bucket (a day, the report's period): the teams pay the
whole bill — the bucket's cost shared in proportion to each team's work in it, idle hours
included; it stays idle only if nobody used the deployment at all.

Either way the parts add up to the bucket's cost *exactly*, in cents: shares are kept as
exact fractions over every hour, the bucket's cost is rounded once (half up), and split
by the largest-remainder method (each part floored, the leftover cents to the largest
remainders, ties by name), so no cent is lost or invented.

Calibrating the cost model from vLLM's own metrics over a busy hour:
``decode / prefill = (Δ vllm:request_decode_time_seconds_sum / Δ
vllm:generation_tokens_total) / (Δ vllm:request_prefill_time_seconds_sum / Δ
vllm:prompt_tokens_total)``; ``cached`` ≈ the prefill cost of a token the prefix
cache served (vLLM's ``vllm:prefix_cache_hits_total`` against prefill time; 0.1 is
a fair start); ``capacity`` = the work per hour at a load where the queue
(``vllm:num_requests_waiting``) stays non-zero. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

IDLE = "idle"


@dataclass(frozen=True, slots=True)
class CostModel:
    """Weights of a token's engine work, and the work one hour of the deployment can do."""

    prefill: Fraction = Fraction(1)
    cached: Fraction = Fraction(1, 10)
    decode: Fraction = Fraction(4)
    capacity_per_hour: Fraction = Fraction(0)  # 0: not calibrated — everything is shared, no idle

    def __post_init__(self) -> None:
        for name in ("prefill", "cached", "decode", "capacity_per_hour"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def work(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Fraction:
        cached = min(max(cached_tokens, 0), prompt_tokens)
        return (self.prefill * (prompt_tokens - cached) + self.cached * cached
                + self.decode * completion_tokens)

    def units(self, scale: int) -> tuple[int, int, int, int]:
        """(prefill, cached, decode, capacity) × ``scale`` as integers — exact when the weights
        have at most log10(scale) decimals, as the platform file's do (``gpu_costs``)."""
        values = tuple(v * scale for v in (self.prefill, self.cached, self.decode,
                                           self.capacity_per_hour))
        if any(v.denominator != 1 for v in values):
            raise ValueError(f"the cost model's weights are not whole multiples of 1/{scale}")
        return tuple(int(v) for v in values)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Allocation:
    """Cents per team and ``idle``; ``shares`` + ``idle`` == the deployment's cost."""

    cost_cents: int
    shares: Mapping[str, int]
    idle: int

    @property
    def total(self) -> int:
        return sum(self.shares.values()) + self.idle


def round_cents(amount: Fraction) -> int:
    """An exact amount of cents, rounded half up (amounts are never negative)."""
    return math.floor(amount + Fraction(1, 2))


#: Showback shares are kept in nano-cents (integers: fast over thousands of hours and teams);
#: each hour's share is floored to one, so a share is off its exact value by less than a
#: nano-cent per hour — far below the cent the final split rounds to, which stays exact.
NANO = 10**9


@dataclass(slots=True)
class BucketAccount:
    """One deployment's hours in one bucket: exact cost, showback shares, work per team.

    Feed it hour by hour (``add_hour``); then ``showback()`` or ``chargeback()`` round once.
    Work may be integers (``CostModel.units``) or fractions.
    """

    cost: Fraction = Fraction(0)  # exact cents
    shares: dict[str, int] = field(default_factory=dict)  # nano-cents, showback
    idle: int = 0  # nano-cents
    work: dict[str, Fraction | int] = field(default_factory=dict)

    def add_hour(self, cost: Fraction, capacity: Fraction | int,
                 work_by_team: Mapping[str, Fraction | int]) -> None:
        """``cost`` (exact cents) and ``capacity`` (work) of the hour, or of the part of it that
        was costed; ``work_by_team`` what each team's requests in it caused."""
        self.cost += cost
        shares, work = self.shares, self.work
        total: Fraction | int = 0
        for team, amount in work_by_team.items():
            if team not in shares:
                shares[team] = 0
                work[team] = 0
            if amount > 0:
                work[team] += amount
                total += amount
        cost_nanos = cost.numerator * NANO // cost.denominator
        if total == 0:
            self.idle += cost_nanos
            return
        over = total if capacity <= 0 or total >= capacity else capacity
        # share = cost × amount / over, floored to a nano-cent, in integers
        top = cost.numerator * NANO * over.denominator
        bottom = cost.denominator * over.numerator
        given = 0
        for team, amount in work_by_team.items():
            if amount > 0:
                share = top * amount.numerator // (bottom * amount.denominator)
                shares[team] += share
                given += share
        self.idle += cost_nanos - given

    def showback(self) -> Allocation:
        """Each team's share and the idle remainder, in cents adding up to the bucket's cost."""
        cents = round_cents(self.cost)
        weights: dict[str, Fraction | int] = {
            team: share for team, share in self.shares.items() if share > 0}
        if self.idle > 0:
            weights[IDLE] = self.idle
        if not weights or cents == 0:
            return Allocation(cents, dict.fromkeys(self.shares, 0), cents)
        parts = largest_remainder(cents, weights)
        idle = parts.pop(IDLE, 0)
        return Allocation(cents, _with_zeros(parts, self.shares), idle)

    def chargeback(self) -> Allocation:
        """The bucket's whole cost spread over the teams by their work (idle hours included);
        idle only when no team used the deployment in the bucket."""
        cents = round_cents(self.cost)
        work = {team: amount for team, amount in self.work.items() if amount > 0}
        if not work:
            return Allocation(cents, dict.fromkeys(self.work, 0), cents)
        return Allocation(cents, _with_zeros(largest_remainder(cents, work), self.work), 0)


def largest_remainder(total: int, weights: Mapping[str, Fraction | int]) -> dict[str, int]:
    """``total`` whole units split in proportion to ``weights`` (positive), summing exactly.

    Each part gets the floor of its exact share; the units left over go one each to the
    parts with the largest remainders (ties: by name, so the result is deterministic).
    Computed in integers: the weights are brought to one denominator, so each exact share
    is ``total × w / W`` with a whole remainder ``total × w mod W``, comparable as it is
    (Fractions here made a by-day report spend most of its time normalising them).
    """
    if total < 0:
        raise ValueError("the total must not be negative")
    if any(weight < 0 for weight in weights.values()):
        raise ValueError("weights must be non-negative and not all zero")
    if all(type(w) is int for w in weights.values()):  # nano-cents, work units: the usual case
        whole = {name: int(w) for name, w in weights.items()}
    else:
        scale = math.lcm(*(Fraction(w).denominator for w in weights.values())) if weights else 1
        whole = {name: int(Fraction(w) * scale) for name, w in weights.items()}
    weight_sum = sum(whole.values())
    if weight_sum <= 0:
        raise ValueError("weights must be non-negative and not all zero")
    parts: dict[str, int] = {}
    remainders: dict[str, int] = {}
    for name, weight in whole.items():
        parts[name], remainders[name] = divmod(total * weight, weight_sum)
    left = total - sum(parts.values())
    by_remainder = sorted(whole, key=lambda name: (-remainders[name], name))
    for name in by_remainder[:left]:
        parts[name] += 1
    return parts


def _with_zeros(parts: Mapping[str, int], teams: Mapping[str, object]) -> dict[str, int]:
    return {team: parts.get(team, 0) for team in teams}
