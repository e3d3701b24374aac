"""GPU costs in the platform file: a deployment declares its GPUs, their hourly cost, changes
and its cost model; a bad amount, count, date or weight names the line and the field."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest

from inferenceops.config.spec import ConfigError, parse_platform

BASE = """\
deployments:
  - name: llama
    engine: simulator
    profile: test-fast
    served_model: m
    gpu_cost:
      gpus: 4
      cost_per_gpu_hour: "2.40"
      since: 2026-12-01
      changes:
        - {effective_from: "2027-01-01T00:00:00Z", gpus: 8, cost_per_gpu_hour: "2.10"}
      cost_model: {prefill: 1, cached: "0.1", decode: 4, capacity_per_hour: 40000000}
models:
  - {name: chat, deployment: llama}
"""


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_platform(text, source="p.yaml", loopback_base_url="http://x", environ={})


def test_a_deployment_declares_its_gpus_and_their_cost_over_time() -> None:
    [deployment] = parse(BASE).spec.deployments
    schedule = deployment.gpu_cost.schedule()
    december = datetime(2026, 12, 15, tzinfo=UTC).timestamp()
    january = datetime(2027, 1, 15, tzinfo=UTC).timestamp()
    assert schedule.cents(december, december + 3600) == 960  # 4 × $2.40
    assert schedule.cents(january, january + 3600) == 1680  # 8 × $2.10
    assert schedule.cents(december - 30 * 86400, december - 29 * 86400) == 0  # before since
    assert schedule.cost_model.cached == Fraction(1, 10)
    assert schedule.cost_model.capacity_per_hour == 40_000_000


@pytest.mark.parametrize(("old", "new", "says"), [
    ('cost_per_gpu_hour: "2.40"', 'cost_per_gpu_hour: "-2.40"',
     "line 8: deployments[0].gpu_cost.cost_per_gpu_hour: '-2.40' is negative"),
    ('cost_per_gpu_hour: "2.40"', "cost_per_gpu_hour: lots",
     "line 8: deployments[0].gpu_cost.cost_per_gpu_hour: 'lots' is not a number"),
    ("gpus: 4", "gpus: -4", "line 7: deployments[0].gpu_cost.gpus"),
    ("since: 2026-12-01", "since: 01/12/2026",
     "line 9: deployments[0].gpu_cost.since: '01/12/2026' is not a time in a known format"),
    ('decode: 4', 'decode: -4', "deployments[0].gpu_cost.cost_model.decode"),
    ('"2027-01-01T00:00:00Z"', '"2026-11-01T00:00:00Z"', "is not after since"),
])
def test_a_bad_gpu_cost_names_the_line_and_the_field(old: str, new: str, says: str) -> None:
    assert old in BASE
    with pytest.raises(ConfigError) as caught:
        parse(BASE.replace(old, new))
    assert says in str(caught.value), str(caught.value)
