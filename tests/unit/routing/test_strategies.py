"""Replica choice behind one protocol: the strategies, the router that picks them, route facts."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from inferenceops.platform import Deployment, Replica
from inferenceops.routing import (
    LeastOutstanding,
    RoundRobin,
    RouteFacts,
    Router,
    Strategy,
    default_router,
)

DEP = Deployment("d", "openai", "m", tuple(Replica(f"r{i}", f"http://h{i}/v1") for i in range(3)))
FACTS = RouteFacts()


def test_least_outstanding_shares_idle_replicas_evenly() -> None:
    balancer = LeastOutstanding()
    picks = Counter(balancer.pick(DEP, FACTS).id for _ in range(300))
    assert picks == {"r0": 100, "r1": 100, "r2": 100}


def test_least_outstanding_avoids_a_busy_replica() -> None:
    balancer = LeastOutstanding()
    busy = DEP.replicas[1]
    balancer.acquire(busy)
    assert all(balancer.pick(DEP, FACTS).id != "r1" for _ in range(20))
    balancer.release(busy)
    assert balancer.in_flight("r1") == 0


@pytest.mark.parametrize("strategy", [LeastOutstanding(), RoundRobin()], ids=["least", "rr"])
def test_tried_replicas_are_skipped_unless_all_were(strategy: Strategy) -> None:
    assert all(strategy.pick(DEP, FACTS, {"r0", "r1"}).id == "r2" for _ in range(10))
    assert strategy.pick(DEP, FACTS, {"r0", "r1", "r2"}).id in {"r0", "r1", "r2"}


def test_round_robin_takes_turns_whatever_the_load() -> None:
    rr = RoundRobin()
    rr.acquire(DEP.replicas[0])
    assert [rr.pick(DEP, FACTS).id for _ in range(6)] == ["r0", "r1", "r2", "r0", "r1", "r2"]


def test_each_deployment_gets_the_strategy_it_names() -> None:
    router = default_router()
    assert isinstance(router.strategy(DEP), LeastOutstanding)  # the default
    assert isinstance(router.strategy(replace(DEP, routing="round_robin")), RoundRobin)
    assert {"least_outstanding", "round_robin"} <= router.names
    with pytest.raises(ValueError, match="default routing strategy"):
        Router({"round_robin": RoundRobin()}, "least_outstanding")


def test_the_prefix_hash_follows_the_prompts_start_and_is_computed_only_when_asked() -> None:
    system = {"role": "system", "content": "You are a careful assistant. " * 50}
    one = RouteFacts(doc={"messages": [system, {"role": "user", "content": "a"}]})
    two = RouteFacts(doc={"messages": [system, {"role": "user", "content": "b"}]})
    other = RouteFacts(doc={"messages": [{"role": "user", "content": "something else"}]})
    assert one._prefix is None  # nothing computed until a strategy asks
    assert one.prefix_hash == two.prefix_hash != other.prefix_hash
    assert RouteFacts(doc={"prompt": "hello"}).prefix_hash is not None
    assert RouteFacts(doc={"messages": []}).prefix_hash is None and RouteFacts().prefix_hash is None
