"""FleetHealth: eligible replicas, slow start, hung streams, probes."""

from __future__ import annotations

import random

from inferenceops.platform import Deployment, Replica
from inferenceops.routing import RoundRobin, RouteFacts
from inferenceops.routing.breaker import BreakerPolicy, State
from inferenceops.routing.health import HUNG, FleetHealth

D = Deployment("d", "openai", "m", (Replica("a", "http://a/v1"), Replica("b", "http://b/v1")))


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **policy: float) -> FleetHealth:
    return FleetHealth(BreakerPolicy(**policy), hung_after_s=10.0, clock=clock,  # type: ignore[arg-type]
                       rng=random.Random(7))


def picks(health: FleetHealth, n: int) -> list[str]:
    strategy = RoundRobin()
    out = []
    for _ in range(n):
        chosen = health.pick(strategy, D, RouteFacts(), ())
        assert chosen is not None
        out.append(chosen[0].id)
    return out


def test_slow_start_gives_a_recovered_replica_a_growing_share() -> None:
    clock = Clock()
    health = make(clock, failures_to_open=1, open_s=1.0, slow_start_s=10.0)
    health.failed("a", "connect")
    assert set(picks(health, 20)) == {"b"}
    clock.now = 1.0
    health.probed("a", True)  # OPEN → HALF_OPEN
    health.probed("a", True)  # → CLOSED, slow start
    early = picks(health, 400).count("a")
    clock.now = 11.0
    late = picks(health, 400).count("a")
    assert early < 80 < 150 < late  # ~10% of its turns at first, all of them at the end


def test_a_replica_whose_streams_all_stall_is_suspected_hung() -> None:
    clock = Clock()
    health = make(clock)
    health.stream_started("a")
    health.stream_started("a")
    clock.now = 9.0
    health.progress("a")  # one of them moved
    clock.now = 18.0
    assert health.check_hung() == []
    clock.now = 19.5
    assert health.check_hung() == ["a"]
    assert health.state("a") is State.OPEN
    assert health.view(D)[0].open_reason == HUNG


def test_non_streamed_work_is_never_taken_for_a_hang() -> None:
    clock = Clock()
    health = make(clock)
    health.stream_started("a")
    health.stream_ended("a")
    clock.now = 1000.0
    assert health.check_hung() == []


def test_only_one_half_open_trial_at_a_time() -> None:
    clock = Clock()
    health = make(clock, failures_to_open=1, open_s=1.0)
    health.failed("a", "connect")
    clock.now = 1.5
    strategy = RoundRobin()
    trials = [health.pick(strategy, D, RouteFacts(), ()) for _ in range(6)]
    assert [c for c in trials if c is not None and c[1]] == [(D.replicas[0], True)]
    health.abandoned("a")
    again = [health.pick(strategy, D, RouteFacts(), ()) for _ in range(2)]
    assert (D.replicas[0], True) in again
