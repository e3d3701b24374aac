"""Tokens and cost per team and model in /metrics: exact, bounded, never naming a key."""

from __future__ import annotations

from inferenceops.metering.metrics import UsageMeter
from inferenceops.metering.usage import Usage


def test_totals_per_team_and_model_and_their_exposition() -> None:
    meter = UsageMeter()
    meter.add("team_a", "chat", Usage(10, 5, 4), True, 1_500_000_001)
    meter.add("team_a", "chat", Usage(3, 1), False, 0)
    meter.add(None, 'we"ird\\model', Usage(1, 1), True, 7)
    assert meter.totals("team_a", "chat") == (2, 13, 6, 4, 1, 1_500_000_001)
    lines = meter.render().splitlines()
    assert 'inferenceops_usage_requests_total{team="team_a",model="chat"} 2' in lines
    assert 'inferenceops_usage_prompt_tokens_total{team="team_a",model="chat"} 13' in lines
    assert 'inferenceops_usage_completion_tokens_total{team="team_a",model="chat"} 6' in lines
    assert 'inferenceops_usage_cached_tokens_total{team="team_a",model="chat"} 4' in lines
    assert 'inferenceops_usage_estimated_requests_total{team="team_a",model="chat"} 1' in lines
    assert 'inferenceops_usage_cost_total{team="team_a",model="chat"} 1.500000001' in lines
    assert 'inferenceops_usage_cost_total{team="none",model="we\\"ird\\\\model"} 0.000000007' in lines
    assert sum(line.startswith("# TYPE") for line in lines) == 6


def test_series_grow_with_teams_and_models_only() -> None:
    meter = UsageMeter()
    for _ in range(1000):  # a thousand requests of many keys and users: one series
        meter.add("team_a", "chat", Usage(1, 1), True, 0)
    samples = [line for line in meter.render().splitlines() if not line.startswith("#")]
    assert len(samples) == 6
    assert UsageMeter().render().count("\n") == 12  # headers only, no samples
