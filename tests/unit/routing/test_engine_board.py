"""What ``/metrics`` shows of the engine board: routing's inputs, per replica."""

from __future__ import annotations

import re

from tests.support.clock import Clock

from inferenceops.platform import Deployment, Replica
from inferenceops.routing import EngineBoard
from inferenceops.routing.engine_metrics import EngineLoad

DEP = Deployment("d", "openai", "m", (Replica("d-0", "http://h0/v1"), Replica("d-1", "http://h1/v1")),
                 routing="engine_load")


def value(text: str, name: str, replica: str) -> float | None:
    found = re.search(rf'^{name}{{deployment="d",replica="{replica}"}} (\S+)$', text, re.M)
    return None if found is None else float(found.group(1))


def test_a_fresh_scrape_is_shown_with_its_age_and_the_load_routing_compares() -> None:
    clock = Clock()
    board = EngineBoard(stale_after_s=3.0, clock=clock)
    board.record("d-0", EngineLoad(running=3, waiting=2, kv_usage=0.5))
    board.acquire("d-0")
    clock.now += 1.25
    text = board.render([DEP])
    assert value(text, "inferenceops_engine_requests_running", "d-0") == 3
    assert value(text, "inferenceops_engine_requests_waiting", "d-0") == 2
    assert value(text, "inferenceops_engine_kv_cache_usage_ratio", "d-0") == 0.5
    assert value(text, "inferenceops_engine_scrape_age_seconds", "d-0") == 1.25
    assert value(text, "inferenceops_engine_scrape_stale", "d-0") == 0
    assert value(text, "inferenceops_replica_in_flight", "d-0") == 1
    # running 3 + 2·waiting 2 + 4·kv 0.5 + 1 sent since the scrape
    assert value(text, "inferenceops_replica_load", "d-0") == board.load("d-0") == 10
    # d-1 was never scraped: no engine figures, its load is its in-flight count
    assert value(text, "inferenceops_engine_requests_running", "d-1") is None
    assert value(text, "inferenceops_replica_load", "d-1") == 0


def test_a_stale_scrape_is_marked_and_routing_falls_back_to_in_flight() -> None:
    clock = Clock()
    board = EngineBoard(stale_after_s=3.0, clock=clock)
    board.record("d-1", EngineLoad(running=9))
    board.acquire("d-1")
    board.acquire("d-1")
    clock.now += 3.5
    text = board.render([DEP])
    assert value(text, "inferenceops_engine_scrape_stale", "d-1") == 1
    assert value(text, "inferenceops_engine_requests_running", "d-1") == 9  # the last one seen
    assert value(text, "inferenceops_replica_load", "d-1") == 2


def test_every_series_is_declared_once_as_a_gauge() -> None:
    board = EngineBoard()
    board.record("d-0", EngineLoad())
    other = Deployment("e", "openai", "m", (Replica("e-0", "http://e/v1"),), routing="prefix_affinity")
    text = board.render([DEP, other])
    names = re.findall(r"^# TYPE (\S+) gauge$", text, re.M)
    assert len(names) == len(set(names)) == 7
    for line in text.splitlines():
        if not line.startswith("#"):
            assert line.split("{", 1)[0] in names


def test_a_deployment_whose_strategy_keeps_its_own_counts_is_not_shown() -> None:
    board = EngineBoard()
    own = Deployment("o", "openai", "m", (Replica("o-0", "http://o/v1"),), routing="round_robin")
    assert 'deployment="o"' not in board.render([own])
