"""The engine-aware strategies: engine load (two choices), prefix and session affinity (bounded load)."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.clock import Clock

from inferenceops.platform import Deployment, Replica
from inferenceops.platform.priority import Priority
from inferenceops.routing import (
    STRATEGY_NAMES,
    BoundedLoadAffinity,
    EngineBoard,
    EngineLoadStrategy,
    RouteFacts,
    Strategy,
    default_router,
)
from inferenceops.routing.affinity import Ring, bound, prefix_affinity, session_affinity
from inferenceops.routing.engine_metrics import EngineLoad


def deployment(n: int = 4, routing: str = "prefix_affinity") -> Deployment:
    return Deployment("d", "openai", "m", tuple(Replica(f"d-{i}", f"http://h{i}/v1")
                                                for i in range(n)), routing=routing)


DEP = deployment()
IDLE = EngineLoad(running=0, waiting=0, kv_usage=0)


def chat(system: str, user: str = "hi") -> RouteFacts:
    return RouteFacts(doc={"messages": [{"role": "system", "content": system},
                                        {"role": "user", "content": user}]})


# ---- engine load ------------------------------------------------------------------------------

def test_engine_load_picks_the_less_loaded_of_two() -> None:
    board = EngineBoard()
    two = deployment(2, "engine_load")
    board.record("d-0", EngineLoad(running=8, waiting=30, kv_usage=0.9))
    board.record("d-1", EngineLoad(running=8, waiting=0, kv_usage=0.3))
    strategy = EngineLoadStrategy(board, rng=random.Random(1))
    assert {strategy.pick(two, RouteFacts(), ()).id for _ in range(50)} == {"d-1"}


def test_engine_load_counts_what_it_sent_since_the_scrape() -> None:
    board = EngineBoard()
    two = deployment(2, "engine_load")
    board.record("d-0", IDLE)
    board.record("d-1", EngineLoad(running=3))
    strategy = EngineLoadStrategy(board, rng=random.Random(1))
    picks = []
    for _ in range(7):
        replica = strategy.pick(two, RouteFacts(), ())
        strategy.acquire(replica)  # still running: the next scrape has not seen them
        picks.append(replica.id)
    # Idle replica first, then both take turns: the burst is not all sent to the one that looked idle.
    assert picks[:3] == ["d-0"] * 3 and Counter(picks) == {"d-0": 5, "d-1": 2}


def test_on_priority_engines_interactive_requests_spread_by_the_interactive_ones_ahead() -> None:
    """A batch leaves one replica a few sequences lighter: on engines that start interactive
    requests first, a burst of interactive requests must not all go there (their prefills
    would queue behind each other) — each goes where fewer interactive requests are in
    flight. Batch lines, and engines that do not order their queue, still follow the load."""
    board = EngineBoard()
    board.record("d-0", EngineLoad(running=240))
    board.record("d-1", EngineLoad(running=246))
    ordered = replace(deployment(2, "engine_load"), engine_priority=True)
    strategy = EngineLoadStrategy(board, rng=random.Random(3))
    interactive, batch = RouteFacts(), RouteFacts(priority=Priority.BACKGROUND)
    burst = []
    for _ in range(4):
        replica = strategy.pick(ordered, interactive, ())
        strategy.acquire(replica, interactive)
        burst.append(replica.id)
    assert Counter(burst) == {"d-0": 2, "d-1": 2}
    assert (board.urgent_in_flight("d-0"), board.urgent_in_flight("d-1")) == (2, 2)
    # Batch lines are not counted as interactive, and are placed by the load.
    assert strategy.pick(ordered, batch, ()).id == "d-0"
    strategy.acquire(board_replica := ordered.replicas[0], batch)
    assert board.urgent_in_flight("d-0") == 2 and board.in_flight("d-0") == 3
    strategy.release(board_replica, batch)
    for replica_id in burst:
        strategy.release(next(r for r in ordered.replicas if r.id == replica_id), interactive)
    assert board.urgent_in_flight("d-0") == board.urgent_in_flight("d-1") == 0
    # Without priority scheduling the whole load decides: the burst goes to the lighter one.
    fcfs = deployment(2, "engine_load")
    picks = []
    for _ in range(4):
        replica = strategy.pick(fcfs, interactive, ())
        strategy.acquire(replica, interactive)
        picks.append(replica.id)
    assert picks == ["d-0"] * 4


def test_engine_load_spreads_over_more_replicas_and_skips_the_loaded_one() -> None:
    board = EngineBoard()
    dep = deployment(4, "engine_load")
    for i in range(4):
        board.record(f"d-{i}", EngineLoad(waiting=50) if i == 2 else IDLE)
    strategy = EngineLoadStrategy(board, rng=random.Random(7))
    picks = Counter(strategy.pick(dep, RouteFacts(), ()).id for _ in range(600))
    assert "d-2" not in picks and min(picks.values()) > 120


def test_stale_metrics_fall_back_to_this_processs_in_flight_count() -> None:
    clock = Clock()
    board = EngineBoard(stale_after_s=3.0, clock=clock)
    two = deployment(2, "engine_load")
    board.record("d-0", IDLE)
    board.record("d-1", EngineLoad(waiting=40))
    strategy = EngineLoadStrategy(board, rng=random.Random(3))
    for _ in range(5):
        board.acquire("d-0")  # we have 5 in flight on d-0, the scrape says d-0 is idle
    board.record("d-0", IDLE)  # a new scrape: sent_since resets, d-0 still looks idle
    assert strategy.pick(two, RouteFacts(), ()).id == "d-0"
    clock.now += 3.5  # both scrapes stale now: the engines' numbers are not believed any more
    assert board.fresh("d-0") is None and board.load("d-0") == 5 and board.load("d-1") == 0
    assert {strategy.pick(two, RouteFacts(), ()).id for _ in range(20)} == {"d-1"}


def test_a_replica_never_scraped_is_judged_by_in_flight() -> None:
    board = EngineBoard()
    board.acquire("d-1")
    assert board.load("d-0") == 0 and board.load("d-1") == 1
    board.release("d-1")
    board.release("d-1")  # an extra release never goes below zero
    assert board.in_flight("d-1") == 0


# ---- the ring and bounded load ----------------------------------------------------------------

def test_the_ring_is_deterministic_and_visits_every_replica_once() -> None:
    a, b = Ring(DEP.replicas), Ring(tuple(DEP.replicas))
    for key in range(200):
        order = a.walk(key)
        assert order == b.walk(key) and sorted(r.id for r in order) == [r.id for r in DEP.replicas]


def test_the_ring_shares_keys_roughly_evenly() -> None:
    ring = Ring(DEP.replicas)
    owners = Counter(ring.walk(random.Random(k).getrandbits(32))[0].id for k in range(8000))
    assert all(1400 < n < 2600 for n in owners.values()), owners


def test_removing_a_replica_moves_only_its_keys() -> None:
    full, less = Ring(DEP.replicas), Ring(DEP.replicas[:3])
    for key in range(500):
        owner = full.walk(key)[0]
        if owner.id != "d-3":
            assert less.walk(key)[0] == owner


def test_the_bound() -> None:
    assert bound(0, 4, 0.25) == 1  # the first request anywhere
    assert bound(7, 4, 0.25) == 3  # 1.25 · 8 / 4 = 2.5 → 3 (not 4 from float noise)
    assert bound(15, 4, 0.25) == 5


def test_same_prefix_same_replica_while_under_the_bound() -> None:
    strategy = prefix_affinity(EngineBoard())
    for tenant in range(40):
        system = f"You are the assistant of tenant {tenant}. " * 30
        picks = {strategy.pick(DEP, chat(system, f"question {q}"), ()).id for q in range(10)}
        assert len(picks) == 1  # nothing in flight: the owner every time, whatever the user says


def test_one_hot_prefix_spills_over_in_ring_order_instead_of_overloading() -> None:
    board = EngineBoard()
    strategy = prefix_affinity(board)
    facts = chat("the one hot system prompt " * 50)
    order = [r.id for r in strategy.ring(DEP).walk(facts.prefix_hash or 0)]
    held = []
    for _ in range(40):
        replica = strategy.pick(DEP, facts, ())
        strategy.acquire(replica)
        held.append(replica.id)
    counts = Counter(held)
    assert max(counts.values()) <= math.ceil(1.25 * 40 / 4)
    assert counts[order[0]] == max(counts.values())  # the owner holds the most
    assert held[0] == order[0] and order[1] in held[:5]  # then its ring neighbour, first


def test_sessions_stick_and_requests_without_a_key_go_to_the_least_busy() -> None:
    board = EngineBoard()
    strategy = session_affinity(board)
    picks = {strategy.pick(DEP, RouteFacts(session="conv-42"), ()).id for _ in range(10)}
    assert len(picks) == 1
    for i in (0, 1, 2):
        board.acquire(f"d-{i}")
    assert strategy.pick(DEP, RouteFacts(), ()).id == "d-3"
    assert prefix_affinity(board).pick(DEP, RouteFacts(), ()).id == "d-3"  # no prompt, no key


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 8), st.sampled_from([0.1, 0.25, 0.5, 1.0]),
       st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=300))
def test_no_replica_exceeds_the_bound_under_any_sequence(n: int, epsilon: float,
                                                          ops: list[tuple[bool, int]]) -> None:
    """Random arrivals (a few hot keys) and completions: every replica stays within the bound."""
    board = EngineBoard()
    dep = deployment(n)
    strategy = BoundedLoadAffinity(board, lambda f: f.session and int(f.session), epsilon=epsilon)
    held: list[Replica] = []
    for arrive, key in ops:
        if arrive or not held:
            replica = strategy.pick(dep, RouteFacts(session=str(key)), ())
            strategy.acquire(replica)
            held.append(replica)
            loads = [board.in_flight(r.id) for r in dep.replicas]
            mean = sum(loads) / n
            assert max(loads) <= math.ceil((1 + epsilon) * mean) + 1
        else:
            strategy.release(held.pop(key % len(held)))


# ---- the protocol's promises --------------------------------------------------------------------

def _all_engine_aware() -> list[Strategy]:
    board = EngineBoard()
    return [EngineLoadStrategy(board), prefix_affinity(board), session_affinity(board)]


@pytest.mark.parametrize("strategy", _all_engine_aware(), ids=["engine_load", "prefix", "session"])
def test_tried_replicas_are_skipped_unless_all_were(strategy: Strategy) -> None:
    facts = replace(chat("sys " * 100), session="s")
    for _ in range(20):
        assert strategy.pick(DEP, facts, {"d-0", "d-1", "d-3"}).id == "d-2"
    assert strategy.pick(DEP, facts, {r.id for r in DEP.replicas}).id in {"d-0", "d-1", "d-2", "d-3"}


@settings(max_examples=100, deadline=None)
@given(st.sets(st.integers(0, 3)), st.text(max_size=40), st.integers(0, 100))
def test_never_a_tried_replica_unless_all_were(tried_ix: set[int], session: str,
                                               busy: int) -> None:
    tried = {f"d-{i}" for i in tried_ix}
    for strategy in _all_engine_aware():
        board = strategy.board  # type: ignore[attr-defined]
        for _ in range(busy % 7):
            board.acquire(f"d-{busy % 4}")
        picked = strategy.pick(DEP, replace(chat(session or "x"), session=session), tried).id
        assert picked not in tried or len(tried) == 4


def test_the_default_router_offers_every_strategy_name() -> None:
    router = default_router()
    assert router.names == set(STRATEGY_NAMES)
    for name in STRATEGY_NAMES:
        picked = router.strategy(replace(DEP, routing=name)).pick(DEP, RouteFacts(), ())
        assert picked in DEP.replicas
