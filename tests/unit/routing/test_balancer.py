"""Replica choice: least outstanding first, ties rotate, excluded replicas skipped."""

from __future__ import annotations

from collections import Counter

from inferenceops.platform import Deployment, Replica
from inferenceops.routing import LeastOutstanding

DEP = Deployment("d", "openai", "m", tuple(Replica(f"r{i}", f"http://h{i}/v1") for i in range(3)))


def test_idle_replicas_share_requests_evenly() -> None:
    balancer = LeastOutstanding()
    picks = Counter(balancer.pick(DEP).id for _ in range(300))
    assert picks == {"r0": 100, "r1": 100, "r2": 100}


def test_busy_replica_is_avoided() -> None:
    balancer = LeastOutstanding()
    busy = DEP.replicas[1]
    balancer.acquire(busy)
    assert all(balancer.pick(DEP).id != "r1" for _ in range(20))
    balancer.release(busy)
    assert balancer.in_flight("r1") == 0


def test_excluded_replicas_are_skipped_unless_all_are() -> None:
    balancer = LeastOutstanding()
    assert all(balancer.pick(DEP, exclude={"r0", "r1"}).id == "r2" for _ in range(10))
    assert balancer.pick(DEP, exclude={"r0", "r1", "r2"}).id in {"r0", "r1", "r2"}
