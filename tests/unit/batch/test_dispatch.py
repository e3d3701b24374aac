"""The dispatch policy (batch.dispatch): windows that follow spare capacity, and the order of lines.

Property-based where a rule is a property: never more in flight than a window allows,
earliest deadline first, shares by weight, prefixes together, backing off when load rises.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from inferenceops.batch.dispatch import (
    BUCKET_S,
    HIGH_WATER,
    Dispatcher,
    EngineMaxima,
    Item,
    Load,
    Window,
    engine_load,
)


def item(n: int, *, deployment: str = "d", deadline: float = 0.0, team: str = "a",
         weight: float = 1.0, prefix: int | None = None) -> Item[int]:
    return Item(deployment, deadline, team, weight, prefix, n)


# ---- windows ---------------------------------------------------------------------------------

ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 2), st.integers(1, 20)),
    st.tuples(st.just("load"), st.integers(0, 2),
              st.tuples(st.floats(0, 600), st.floats(0, 20), st.sampled_from([None, 256.0, 512.0]))),
    st.tuples(st.just("take"), st.just(0), st.just(0)),
    st.tuples(st.just("done"), st.integers(0, 2), st.booleans()),
), max_size=80)


@given(ops)
@settings(max_examples=300, deadline=None)
def test_never_more_in_flight_than_the_window_allows(script: list[tuple[str, int, object]]) -> None:
    dispatch: Dispatcher[int] = Dispatcher(64)
    counter = itertools.count()
    now = 0.0
    for op, d, arg in script:
        name = f"d{d}"
        now += 0.5
        if op == "add":
            for _ in range(int(arg)):  # type: ignore[call-overload]
                dispatch.add(item(next(counter), deployment=name))
        elif op == "load":
            busy, queued, slots = arg  # type: ignore[misc]
            dispatch.observe(name, Load("engine", busy, queued, slots), now)
        elif op == "take":
            before = {n: dispatch.in_flight(n) for n in dispatch.deployments}
            taken = list(dispatch.take())
            for n in dispatch.deployments:
                allowed = dispatch.window(n).allowed
                # A window that shrank stops new sends; it never stops running lines.
                assert dispatch.in_flight(n) <= max(allowed, before.get(n, 0))
                if any(i.deployment == n for i in taken):
                    assert dispatch.in_flight(n) <= allowed
                assert 0 <= allowed <= 64
        elif dispatch.in_flight(name):
            dispatch.done(name, refused=bool(arg), now=now)


@given(st.floats(0.0, 200.0), st.floats(1.0, 200.0), st.integers(1, 200))
def test_backs_off_when_interactive_load_rises(base: float, rise: float, mine: int) -> None:
    """More busy without the batch sending more (interactive rose) never widens the window;
    into the headroom it narrows it; a queue halves it."""
    slots = 512.0
    window = Window(1024, start=mine)
    window.update(Load("engine", base + mine, 0.0, slots), mine, 0.0)
    before = window.limit
    window.update(Load("engine", base + mine + rise, 0.0, slots), mine, 10.0)
    assert window.limit <= max(before, window.floor) or base + mine + rise < HIGH_WATER * slots
    if base + mine + rise > HIGH_WATER * slots:
        assert window.limit < before or window.limit == window.floor
    queued = Window(1024, start=mine)
    queued.update(Load("engine", base, 3.0, slots), mine, 0.0)
    assert queued.limit <= max(1.0, mine * 0.5)


def test_grows_again_when_load_falls_and_settles_below_the_high_water_mark() -> None:
    window = Window(1024)
    slots, interactive, now = 1024.0, 100.0, 0.0
    for _ in range(40):  # the batch fills the room, tick by tick
        now += 1
        window.update(Load("engine", interactive + window.allowed, 0.0, slots), window.allowed, now)
    assert HIGH_WATER * slots - interactive - 2 <= window.allowed <= HIGH_WATER * slots - interactive
    interactive = 500.0  # interactive load rises: the batch's share shrinks at once
    now += 1
    window.update(Load("engine", interactive + window.allowed, 0.0, slots), window.allowed, now)
    assert window.allowed <= HIGH_WATER * slots - interactive
    interactive = 50.0  # and falls: it grows again
    for _ in range(40):
        now += 1
        window.update(Load("engine", interactive + window.allowed, 0.0, slots), window.allowed, now)
    assert window.allowed >= HIGH_WATER * slots - interactive - 2


def test_slow_start_until_the_first_queue_then_halving_once_per_cooldown() -> None:
    window = Window(4096)
    for step in range(5):
        window.update(Load("none", window.allowed), window.allowed, float(step))
    assert window.allowed == 32
    window.update(Load("engine", 300, 4.0, None), 32, 10.0)
    assert window.allowed == 16
    window.update(Load("engine", 300, 4.0, None), 16, 10.5)  # within the cooldown: one cut
    assert window.allowed == 16
    window.update(Load("none", 16), 16, 12.0)
    assert window.allowed == 17  # additive from now on


def test_growth_is_let_go_line_by_line_over_the_ramp_and_shrinking_at_once() -> None:
    """New lines are new prompts: thirty-two sent together make one long prefill step that an
    interactive request arriving meanwhile waits for, so a window's growth is released
    gradually over ``RAMP_S``."""
    dispatch: Dispatcher[int] = Dispatcher(1024, window=lambda c: Window(c, start=10))
    for n in range(200):
        dispatch.add(item(n))
    started = [len(list(dispatch.take(now=0.0)))]
    assert started == [10]
    dispatch.observe("d", Load("engine", 10.0, 0.0, 512.0), 1.0)  # room: grows by MAX_STEP
    window = dispatch.window("d")
    assert window.allowed == 42 and window.ramping(1.0) and dispatch.ramping(1.0)
    for at in (1.0, 1.1, 1.2, 1.3, 1.4, 1.5):
        started.append(len(list(dispatch.take(now=at))))
    assert started == [10, 0, 6, 6, 7, 6, 7] and dispatch.in_flight("d") == 42
    assert not dispatch.ramping(1.5)
    # Shrinking is at once, even in the middle of a growth.
    dispatch.observe("d", Load("engine", 42.0, 0.0, 512.0), 2.0)
    assert dispatch.window("d").allowed_at(2.1) < dispatch.window("d").allowed
    dispatch.observe("d", Load("engine", 500.0, 0.0, 512.0), 2.2)  # interactive load rose
    assert dispatch.window("d").allowed_at(2.2) == dispatch.window("d").allowed < 42


def test_an_unused_window_does_not_grow() -> None:
    window = Window(1024, start=50)
    window.update(Load("engine", 10.0, 0.0, 512.0), 3, 0.0)
    assert window.allowed == 50


def test_engine_maxima_are_learned_from_full_engines() -> None:
    maxima = EngineMaxima()
    assert engine_load({"r1": (100, 0), "r2": (90, 0)}, maxima).slots is None
    assert engine_load({"r1": (100, 2), "r2": (90, 1)}, maxima).slots is None  # arrivals
    load = engine_load({"r1": (256, 5), "r2": (100, 0)}, maxima)
    assert load.slots == 512.0  # r2 not seen full yet: taken as r1's
    assert (load.busy, load.queued) == (356, 3)
    assert engine_load({"r1": (10, 0), "r2": (200, 3)}, maxima).slots == 456.0


# ---- order -----------------------------------------------------------------------------------

def _drain(dispatch: Dispatcher[int]) -> list[Item[int]]:
    out: list[Item[int]] = []
    while True:
        batch = list(dispatch.take())
        if not batch:
            return out
        for taken in batch:
            out.append(taken)
            dispatch.done(taken.deployment)


@given(st.lists(st.tuples(st.floats(0, 30 * BUCKET_S), st.sampled_from("abc")), min_size=1,
                max_size=60))
def test_earliest_deadline_bucket_first(lines: list[tuple[float, str]]) -> None:
    dispatch: Dispatcher[int] = Dispatcher(1)
    for n, (deadline, team) in enumerate(lines):
        dispatch.add(item(n, deadline=deadline, team=team))
    buckets = [int(i.deadline // BUCKET_S) for i in _drain(dispatch)]
    assert buckets == sorted(buckets)
    assert len(buckets) == len(lines)


@given(st.integers(1, 5), st.integers(1, 5), st.integers(20, 120))
def test_teams_share_by_weight(wa: int, wb: int, n: int) -> None:
    dispatch: Dispatcher[int] = Dispatcher(1)
    for k in range(n):
        dispatch.add(item(2 * k, team="a", weight=wa))
        dispatch.add(item(2 * k + 1, team="b", weight=wb))
    order = _drain(dispatch)
    for cut in range(1, len(order)):
        head = order[:cut]
        a = sum(i.team == "a" for i in head)
        b = cut - a
        if a < n and b < n:  # while both are backlogged, the shares follow the weights
            assert abs(a / wa - b / wb) <= 1 / wa + 1 / wb


@given(st.lists(st.tuples(st.sampled_from([None, 1, 2, 3]), st.sampled_from("ab")), min_size=1,
                max_size=60))
def test_lines_sharing_a_prefix_go_together(lines: list[tuple[int | None, str]]) -> None:
    dispatch: Dispatcher[int] = Dispatcher(1)
    for n, (prefix, team) in enumerate(lines):
        dispatch.add(item(n, prefix=prefix, team=team))
    order = _drain(dispatch)
    for team in "ab":
        prefixes = [i.prefix for i in order if i.team == team]
        runs = [p for k, p in enumerate(prefixes) if k == 0 or prefixes[k - 1] != p]
        assert len(runs) == len(set(prefixes))  # each prefix is one contiguous run
        ids = [i.payload for i in order if i.team == team]
        for prefix in set(prefixes):
            same = [x for x, p in zip(ids, prefixes, strict=True) if p == prefix]
            assert same == sorted(same)  # FIFO inside a group


def test_a_team_idle_for_a_while_banks_no_credit() -> None:
    dispatch: Dispatcher[int] = Dispatcher(1)
    for k in range(10):
        dispatch.add(item(k, team="a"))
    first = [i.team for i in itertools.islice(_take_one_by_one(dispatch), 6)]
    assert first == ["a"] * 6
    for k in range(10):
        dispatch.add(item(100 + k, team="b"))
    rest = [i.team for i in _drain(dispatch)]
    assert rest[:8] == ["a", "b"] * 4 or rest[:8] == ["b", "a"] * 4  # alternate, no catch-up


def _take_one_by_one(dispatch: Dispatcher[int]):  # type: ignore[no-untyped-def]
    while True:
        batch = list(dispatch.take())
        if not batch:
            return
        for taken in batch:
            dispatch.done(taken.deployment)
            yield taken


def test_deployments_have_their_own_windows() -> None:
    dispatch: Dispatcher[int] = Dispatcher(8, window=lambda c: Window(c, start=2))
    for k in range(10):
        dispatch.add(item(k, deployment="x"))
        dispatch.add(item(100 + k, deployment="y"))
    taken = list(dispatch.take())
    assert sorted(i.deployment for i in taken) == ["x", "x", "y", "y"]
    assert dispatch.held == 16
    dispatch.done("x", refused=True, now=5.0)  # a refusal narrows x only
    assert dispatch.window("x").allowed == 1 and dispatch.window("y").allowed == 2
    assert list(dispatch.take()) == []


@given(st.floats(0.0, 600.0), st.floats(0.5, 100.0), st.integers(1, 500))
def test_on_priority_ordered_engines_a_queue_takes_back_only_the_overshoot(
        busy: float, queued: float, mine: int) -> None:
    """Engines that start interactive requests first: queued batch lines are overshoot; the
    window gives back the queue and what runs above the mark — never more, so no halving."""
    slots = 512.0
    window = Window(1024, start=mine)
    window.update(Load("engine", busy, queued, slots, ordered=True), mine, 0.0)
    over = queued + max(0.0, busy - HIGH_WATER * slots)
    assert window.limit == max(window.floor, mine - over)
    fifo = Window(1024, start=mine)
    fifo.update(Load("engine", busy, queued, slots), mine, 0.0)
    assert fifo.limit == max(fifo.floor, mine * 0.5)


def test_a_refusal_still_halves_an_ordered_deployments_window() -> None:
    dispatch: Dispatcher[int] = Dispatcher(64, window=lambda c: Window(c, start=40))
    dispatch.observe("d", Load("engine", 10.0, 0.0, 512.0, ordered=True), 0.0)
    before = dispatch.window("d").limit
    dispatch.done("d", refused=True, now=5.0)
    assert dispatch.window("d").limit == before * 0.5
