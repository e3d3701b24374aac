"""Promoting a batch whose deadline is at risk (``batch.dispatch.DeadlineWatch``): at risk by
its pace or by its deadline's nearness it goes first and past a small window; on track it
does not; promotion moves lines, never loses or doubles one, and ends with the batch."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from inferenceops.batch.dispatch import (
    PROMOTE_MARGIN_S,
    Dispatcher,
    Item,
    Window,
)

NOW = 1_800_000_000.0
HOUR = 3600.0


def line(n: int, batch: str, deadline: float, left: int, *, team: str = "t") -> Item[int]:
    return Item("d", deadline, team, 1.0, None, n, batch=batch, left=left)


def tight(ceiling: int) -> Dispatcher[int]:
    """A dispatcher whose windows let one line run at a time (no spare capacity)."""
    return Dispatcher(ceiling, window=lambda c: Window(c, floor=1, start=1))


def paced(dispatch: Dispatcher[int], lines_per_s: float, batch: str = "pace") -> None:
    """The deployment recorded lines at ``lines_per_s`` over the last 100 seconds."""
    count = int(lines_per_s * 100)
    for i in range(count):
        dispatch.deadlines.recorded(batch, "d", NOW - 100 + i * 100 / count)


def test_a_batch_too_slow_for_its_deadline_goes_first_and_past_the_window() -> None:
    dispatch = tight(ceiling=8)
    paced(dispatch, 0.1)  # 0.1 line/s: 1000 lines need ~10,000 s, and 3 h is 10,800 s
    for n in range(3):
        dispatch.add(line(n, "soon", NOW + 2 * HOUR, left=5))  # on track: 50 s of work
    for n in range(3, 6):
        dispatch.add(line(n, "big", NOW + 3 * HOUR, left=1000))
    sent = [i.payload for i in dispatch.take(NOW)]
    assert dispatch.just_promoted == ["big"]
    assert sent == [3, 4]  # big's lines first, two of them (25 % of 8) though the window is 1
    assert dispatch.in_flight("d") == 2


def test_batches_on_track_are_not_promoted_and_order_stays_by_deadline() -> None:
    dispatch = tight(ceiling=8)
    paced(dispatch, 10.0)
    for n in range(3):
        dispatch.add(line(n, "later", NOW + 3 * HOUR, left=1000))  # 100 s of work
    for n in range(3, 6):
        dispatch.add(line(n, "sooner", NOW + 2 * HOUR, left=1000))
    assert [i.payload for i in dispatch.take(NOW)] == [3]
    assert dispatch.deadlines.promoted == set()


def test_a_deadline_closer_than_the_margin_promotes_without_any_pace_known() -> None:
    dispatch = tight(ceiling=4)
    dispatch.add(line(0, "far", NOW + 2 * HOUR, left=10))
    dispatch.add(line(1, "near", NOW + PROMOTE_MARGIN_S - 1, left=10))
    dispatch.add(line(2, "near", NOW + PROMOTE_MARGIN_S - 1, left=10))
    assert [i.payload for i in dispatch.take(NOW)] == [1]  # 25 % of 4 is one: the floor is 1
    assert dispatch.deadlines.promoted == {"near"}
    list(dispatch.take(NOW))
    assert dispatch.just_promoted == []  # promoted once, not again


def test_promotion_ends_with_the_batch_and_lines_claimed_later_go_first_meanwhile() -> None:
    dispatch = tight(ceiling=8)
    dispatch.add(line(0, "near", NOW + 60, left=2))
    dispatch.add(line(1, "other", NOW + 30 * 60, left=1))
    assert [i.payload for i in dispatch.take(NOW)] == [0]
    dispatch.add(line(2, "near", NOW + 60, left=1))  # claimed after the promotion
    dispatch.done("d", batch="near", wall=NOW + 1)
    assert [i.payload for i in dispatch.take(NOW + 1)] == [2]
    dispatch.done("d", batch="near", wall=NOW + 2)
    assert "near" not in dispatch.deadlines.promoted  # its lines are done


@given(lines=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 5), st.integers(1, 50),
                                st.sampled_from(["t1", "t2"])), max_size=40),
       promote=st.lists(st.sampled_from("abc"), max_size=3))
def test_promotion_moves_lines_never_loses_or_doubles_one(
        lines: list[tuple[str, int, int, str]], promote: list[str]) -> None:
    dispatch: Dispatcher[int] = Dispatcher(1000, window=lambda c: Window(c, start=c))
    for n, (batch, hours, left, team) in enumerate(lines):
        dispatch.add(line(n, batch, NOW + hours * HOUR, left, team=team))
    for batch in promote:
        dispatch.deadlines.promoted.add(batch)
        for queue in dispatch._queues.values():  # noqa: SLF001 (the queue's own move)
            queue.promote(batch)
    sent = [i for i in dispatch.take()]
    assert Counter(i.payload for i in sent) == Counter(range(len(lines)))
    first = [i.batch in promote for i in sent]
    assert first == sorted(first, reverse=True)  # every promoted line before every other


def test_promotions_are_counted_by_deployment_and_the_gauge_falls_when_done() -> None:
    dispatch = tight(ceiling=4)
    dispatch.add(line(0, "near", NOW + 60, left=1))
    dispatch.add(line(1, "far", NOW + 2 * HOUR, left=1))
    list(dispatch.take(NOW))
    watch = dispatch.deadlines
    assert (watch.promotions, watch.promoted_now()) == ({"d": 1}, {"d": 1})
    dispatch.done("d", batch="near", wall=NOW + 1)
    assert (watch.promotions, watch.promoted_now()) == ({"d": 1}, {})


def test_promotion_cannot_starve_another_team_past_its_own_risk() -> None:
    """The rule: a batch that is not promoted may wait behind promoted ones, but only until
    its own deadline is at risk (at the latest ``PROMOTE_MARGIN_S`` before it); then it is
    promoted too, and promoted lines are shared between teams by weight (start-time fair
    queueing, a newly waiting team starting level), so it runs before its deadline even
    while another team keeps adding promoted work faster than the deployment runs it."""
    dispatch = tight(ceiling=4)  # one line at a time: no spare capacity at all
    deadline = NOW + 2 * HOUR
    for n in range(5):
        dispatch.add(line(1000 + n, "b-batch", deadline, left=5, team="b"))
    sent_b: list[float] = []
    step = 10.0
    wall = NOW
    n = 0
    while wall < deadline and len(sent_b) < 5:
        for _ in range(2):  # team a: two new lines of a batch due within the margin, each step
            n += 1
            dispatch.add(line(n, f"a-{n}", wall + PROMOTE_MARGIN_S / 2, left=1000, team="a"))
        for item in list(dispatch.take(wall)):  # what goes now; each ends within the step
            if item.team == "b":
                sent_b.append(wall)
            dispatch.done("d", batch=item.batch, wall=wall)
        wall += step
    assert len(sent_b) == 5 and sent_b[-1] < deadline  # every line of b before its deadline
    assert sent_b[0] >= deadline - PROMOTE_MARGIN_S  # it did wait behind a's promoted work...
    assert sent_b[0] <= deadline - PROMOTE_MARGIN_S + 2 * step  # ...only until its own risk
    assert sent_b[-1] - sent_b[0] <= 2 * 5 * step  # then it shares the lane one for one
