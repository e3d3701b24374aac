"""GPU-time chargeback: a self-hosted deployment's cost shared among teams, to the cent.

A self-hosted deployment costs GPU-hours whether or not anyone uses it. For a
period, its cost is ``gpus × hours × cost per GPU-hour``. Each request caused
*engine work*, weighted per deployment by a cost model (``CostModel``):

    work = prefill × (prompt − cached) + cached × cached_tokens + decode × completion

(prefix-cache hits are cheaper than prefilling; decoding a token usually costs
more than prefilling one). ``capacity`` is the work the deployment can do per
hour when saturated. A team's share is ``cost × its work / (capacity × hours)``;
what no team's work accounts for is *idle* cost. When the teams' work exceeds the
capacity the deployment was busier than calibrated: the whole cost is shared in
proportion to work and idle is zero.

Two views: **showback** reports each team's share and the idle remainder
separately; **chargeback** also spreads the idle remainder over the teams in
proportion to their work (a fully loaded cost: the teams pay the whole bill; if
nobody used the deployment, its cost stays idle). Either way the parts add up to
the deployment's cost *exactly*, in cents: shares are exact fractions, then
rounded by the largest-remainder method (each part floored, the leftover cents
to the largest remainders, ties by name), so no cent is lost or invented.

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
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Allocation:
    """Cents per team and ``idle``; ``shares`` + ``idle`` == the deployment's cost."""

    cost_cents: int
    shares: Mapping[str, int]
    idle: int

    @property
    def total(self) -> int:
        return sum(self.shares.values()) + self.idle


def deployment_cost_cents(gpus: int, hours: Fraction, cents_per_gpu_hour: Fraction) -> int:
    """What the deployment cost for ``hours``, rounded to the nearest cent (half up)."""
    if gpus < 0 or hours < 0 or cents_per_gpu_hour < 0:
        raise ValueError("GPUs, hours and price must not be negative")
    return math.floor(gpus * hours * cents_per_gpu_hour + Fraction(1, 2))


def showback(cost_cents: int, hours: Fraction, model: CostModel,
             work_by_team: Mapping[str, Fraction]) -> Allocation:
    """Each team's share of ``cost_cents`` by its work against the capacity; the rest idle."""
    work = {team: amount for team, amount in work_by_team.items() if amount > 0}
    total_work = sum(work.values(), Fraction(0))
    capacity = model.capacity_per_hour * hours
    if total_work == 0:
        return Allocation(cost_cents, dict.fromkeys(work_by_team, 0), cost_cents)
    if capacity <= 0 or total_work >= capacity:
        parts = largest_remainder(cost_cents, work)
        return Allocation(cost_cents, _with_zeros(parts, work_by_team), 0)
    weights = {**work, IDLE: capacity - total_work}
    parts = largest_remainder(cost_cents, weights)
    idle = parts.pop(IDLE)
    return Allocation(cost_cents, _with_zeros(parts, work_by_team), idle)


def chargeback(cost_cents: int, work_by_team: Mapping[str, Fraction]) -> Allocation:
    """The whole cost spread over the teams by their work (idle included); idle only when no
    team used the deployment at all."""
    work = {team: amount for team, amount in work_by_team.items() if amount > 0}
    if not work:
        return Allocation(cost_cents, dict.fromkeys(work_by_team, 0), cost_cents)
    return Allocation(cost_cents, _with_zeros(largest_remainder(cost_cents, work), work_by_team), 0)


def largest_remainder(total: int, weights: Mapping[str, Fraction]) -> dict[str, int]:
    """``total`` whole units split in proportion to ``weights`` (positive), summing exactly.

    Each part gets the floor of its exact share; the units left over go one each to the
    parts with the largest remainders (ties: by name, so the result is deterministic).
    """
    if total < 0:
        raise ValueError("the total must not be negative")
    weight_sum = sum(weights.values(), Fraction(0))
    if weight_sum <= 0 or any(weight < 0 for weight in weights.values()):
        raise ValueError("weights must be non-negative and not all zero")
    exact = {name: total * weight / weight_sum for name, weight in weights.items()}
    parts = {name: share.numerator // share.denominator for name, share in exact.items()}
    left = total - sum(parts.values())
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] - parts[name]), name))
    for name in by_remainder[:left]:
        parts[name] += 1
    return parts


def _with_zeros(parts: Mapping[str, int], teams: Mapping[str, Fraction]) -> dict[str, int]:
    return {team: parts.get(team, 0) for team in teams}
