"""The deployment gate: fast path, bounded waiting, strict priority, weighted fairness, no leaked slots.

Service is driven step by step (a request holds its slot until the test finishes
it) so grant order and shares are exact, not timing-dependent. Real time is
used only where a maximum wait has to run out, with tiny waits and generous
'does not hang' bounds.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferenceops.admission.fair_queue import (
    MAX_RETRY_S,
    UNKNOWN_RETRY_S,
    DeploymentGate,
    QueueRejected,
    retry_after_estimate,
)
from inferenceops.platform.priority import Priority

HI, LO = Priority.INTERACTIVE, Priority.BACKGROUND
LONG = {HI: 60.0, LO: 60.0}


def make_gate(capacity: int = 1, max_queue: int = 1000, waits: dict[Priority, float] | None = None
              ) -> DeploymentGate:
    return DeploymentGate("dep", capacity, max_queue=max_queue, max_wait_s=waits or LONG)


async def settle(rounds: int = 8) -> None:
    """Let every ready task run; grants are synchronous, so a few loop turns are enough."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def spin_until(condition: Callable[[], bool], turns: int = 200) -> None:
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


class Waiters:
    """Labelled requests that record the order they were admitted in and then hold their slot."""

    def __init__(self, gate: DeploymentGate) -> None:
        self.gate = gate
        self.order: list[str] = []
        self.tasks: dict[str, asyncio.Task[float]] = {}

    def add(self, label: str, team: str = "t", weight: float = 1.0, priority: Priority = HI) -> None:
        async def run() -> float:
            waited = await self.gate.acquire(team, weight, priority)
            self.order.append(label)
            return waited

        self.tasks[label] = asyncio.create_task(run())

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


class Engine:
    """A deterministic fake engine: each client loops acquire → hold until step() finishes it → release.

    A client is always either running or waiting, so a team with N clients keeps
    about N requests queued: the backlog is set by the number of clients.
    """

    def __init__(self, gate: DeploymentGate) -> None:
        self.gate = gate
        self.running: deque[asyncio.Future[None]] = deque()
        self.log: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []

    def clients(self, team: str, count: int, weight: float = 1.0, priority: Priority = HI) -> None:
        self.tasks += [asyncio.create_task(self._client(team, weight, priority)) for _ in range(count)]

    async def _client(self, team: str, weight: float, priority: Priority) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.gate.acquire(team, weight, priority)
            try:
                self.log.append(team)
                done: asyncio.Future[None] = loop.create_future()
                self.running.append(done)
                await done
            finally:
                self.gate.release()

    async def start(self) -> None:
        await settle()
        assert len(self.running) == self.gate.capacity

    async def step(self, pause: float = 0.0) -> None:
        """Finish the oldest running request and wait until its slot is taken again."""
        self.running.popleft().set_result(None)
        if pause:
            await asyncio.sleep(pause)
        await spin_until(lambda: len(self.running) == self.gate.capacity)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        assert (self.gate.in_flight, self.gate.waiting) == (0, 0)
        assert self.gate._self_check() == []


# -- fast path, bounds, waits -----------------------------------------------------------------


def test_fast_path_takes_no_wait_and_never_suspends() -> None:
    gate = make_gate(capacity=2)
    for _ in range(2):
        coro = gate.acquire("t", 1.0, HI)
        with pytest.raises(StopIteration) as done:  # completes on its first step: no await yielded
            coro.send(None)
        assert done.value.value == 0.0
    assert gate.in_flight == 2
    gate.release()
    gate.release()
    assert gate.in_flight == 0
    assert gate.stats().admitted == {HI: 2, LO: 0}


async def test_release_without_acquire_is_an_error() -> None:
    gate = make_gate()
    with pytest.raises(RuntimeError):
        gate.release()


async def test_queue_full_is_rejected_at_once_when_max_queue_are_waiting() -> None:
    gate = make_gate(capacity=1, max_queue=3)
    await gate.acquire("t", 1.0, HI)
    waiters = Waiters(gate)
    for i in range(3):
        waiters.add(f"w{i}")
    await settle()
    assert gate.waiting == 3
    with pytest.raises(QueueRejected) as rejected:
        await gate.acquire("other", 1.0, HI)
    err = rejected.value
    assert (err.reason, err.deployment) == ("queue_full", "dep")
    assert err.retry_after_s == UNKNOWN_RETRY_S  # no service observed yet
    assert "queue is full" in err.message and str(err) == err.message
    assert gate.stats().rejected == {"queue_full": 1, "wait_exceeded": 0}
    assert gate.waiting == 3
    await waiters.close()
    gate.release()
    assert (gate.in_flight, gate.waiting) == (0, 0)


async def test_zero_max_queue_means_no_waiting_at_all() -> None:
    gate = make_gate(capacity=1, max_queue=0)
    await gate.acquire("t", 1.0, LO)
    with pytest.raises(QueueRejected, match="queue is full"):
        await gate.acquire("t", 1.0, LO)
    gate.release()


async def test_wait_exceeded_after_the_class_maximum_wait_and_the_slot_is_not_leaked() -> None:
    gate = make_gate(capacity=1, waits={HI: 0.05, LO: 60.0})
    await gate.acquire("t", 1.0, HI)
    background = asyncio.create_task(gate.acquire("t", 1.0, LO))
    async with asyncio.timeout(10):  # 'does not hang' bound, not a timing assertion
        with pytest.raises(QueueRejected) as rejected:
            await gate.acquire("t", 1.0, HI)
    assert rejected.value.reason == "wait_exceeded"
    assert rejected.value.retry_after_s >= UNKNOWN_RETRY_S
    assert gate.waiting_by_priority() == {HI: 0, LO: 1}  # the background class has its own wait
    assert gate.stats().rejected == {"queue_full": 0, "wait_exceeded": 1}
    gate.release()  # goes to the background waiter, not to the expired one
    assert await background >= 0.0
    assert (gate.in_flight, gate.waiting) == (1, 0)
    gate.release()
    assert gate.in_flight == 0
    assert gate._self_check() == []


async def test_many_waiters_expire_in_one_batch_and_later_ones_keep_waiting() -> None:
    gate = make_gate(capacity=1, waits={HI: 0.05, LO: 60.0})
    await gate.acquire("t", 1.0, HI)
    early = [asyncio.create_task(gate.acquire(f"team{i % 3}", 1.0, HI)) for i in range(20)]
    async with asyncio.timeout(10):
        results = await asyncio.gather(*early, return_exceptions=True)
    assert all(isinstance(r, QueueRejected) and r.reason == "wait_exceeded" for r in results)
    assert gate.waiting == 0 and gate._self_check() == []
    gate.release()
    assert await gate.acquire("t", 1.0, HI) == 0.0  # fast path again: nothing stale left behind
    gate.release()


async def test_zero_max_wait_rejects_instead_of_queueing() -> None:
    gate = make_gate(capacity=1, waits={HI: 60.0, LO: 0.0})
    await gate.acquire("t", 1.0, HI)
    with pytest.raises(QueueRejected) as rejected:
        await gate.acquire("t", 1.0, LO)
    assert rejected.value.reason == "wait_exceeded" and gate.waiting == 0
    gate.release()


async def test_invalid_weight_and_configuration_are_refused() -> None:
    with pytest.raises(ValueError):
        DeploymentGate("d", 1, max_queue=1, max_wait_s={HI: 1.0})
    with pytest.raises(ValueError):
        DeploymentGate("d", -1, max_queue=1, max_wait_s=LONG)
    gate = make_gate()
    await gate.acquire("t", 1.0, HI)
    for weight in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            await gate.acquire("t", weight, HI)
    assert gate.waiting == 0
    gate.release()


async def test_queued_request_returns_the_seconds_it_waited_and_counts_them() -> None:
    gate = make_gate(capacity=1)
    await gate.acquire("t", 1.0, LO)
    waiter = asyncio.create_task(gate.acquire("t", 1.0, LO))
    await settle()
    await asyncio.sleep(0.01)
    gate.release()
    waited = await waiter
    assert waited > 0.0
    stats = gate.stats()
    assert stats.admitted == {HI: 0, LO: 2} and stats.admitted_after_wait == {HI: 0, LO: 1}
    assert stats.wait_seconds_total[LO] == pytest.approx(waited)
    gate.release()


# -- policy -----------------------------------------------------------------------------------


async def test_strict_priority_interactive_goes_before_background_that_queued_earlier() -> None:
    gate = make_gate(capacity=1)
    await gate.acquire("x", 1.0, LO)
    waiters = Waiters(gate)
    for i in range(5):
        waiters.add(f"b{i}", team=f"bt{i % 2}", priority=LO)
    await settle()
    for i in range(5):
        waiters.add(f"i{i}", team="it", priority=HI)
    await settle()
    for _ in range(10):
        gate.release()
        await settle()
    assert waiters.order == [f"i{i}" for i in range(5)] + ["b0", "b1", "b2", "b3", "b4"]
    gate.release()
    assert (gate.in_flight, gate.waiting) == (0, 0)
    await waiters.close()


async def test_requests_of_one_team_are_served_first_in_first_out() -> None:
    gate = make_gate(capacity=1)
    await gate.acquire("t", 1.0, HI)
    waiters = Waiters(gate)
    for i in range(6):
        waiters.add(f"a{i}", team="a")
        waiters.add(f"b{i}", team="b")
    await settle()
    for _ in range(12):
        gate.release()
        await settle()
    assert [x for x in waiters.order if x[0] == "a"] == [f"a{i}" for i in range(6)]
    assert [x for x in waiters.order if x[0] == "b"] == [f"b{i}" for i in range(6)]
    gate.release()
    await waiters.close()


async def test_fairness_a_team_with_ten_times_the_backlog_gets_no_more_than_its_share() -> None:
    gate = make_gate(capacity=2)
    engine = Engine(gate)
    engine.clients("A", 22)  # ~20 waiting
    engine.clients("B", 4)  # ~2 waiting
    await engine.start()
    for _ in range(2000):
        await engine.step()
        assert gate.in_flight <= gate.capacity
    shares = Counter(engine.log[-2000:])
    assert shares["A"] / 2000 <= 0.55
    assert gate.waiting_by_priority()[HI] >= 20
    await engine.stop()


async def test_weighted_fairness_three_to_one_gives_seventy_five_twenty_five() -> None:
    gate = make_gate(capacity=4)
    engine = Engine(gate)
    engine.clients("heavy", 12, weight=3.0)
    engine.clients("light", 12, weight=1.0)
    await engine.start()
    for _ in range(2000):
        await engine.step()
    shares = Counter(engine.log[-2000:])
    assert shares["heavy"] / 2000 == pytest.approx(0.75, abs=0.05)
    await engine.stop()


async def test_idle_team_re_entering_gets_no_burst_beyond_its_fair_share() -> None:
    gate = make_gate(capacity=1)
    engine = Engine(gate)
    engine.clients("A", 5)
    await engine.start()
    for _ in range(500):  # A alone: virtual time moves on while B is idle
        await engine.step()
    mark = len(engine.log)
    engine.clients("B", 10)
    await settle()
    for _ in range(200):
        await engine.step()
    after = engine.log[mark:]
    lead = 0
    for team in after:  # in every prefix, B is at most one request ahead of A
        lead += 1 if team == "B" else -1
        assert lead <= 1
    assert Counter(after)["B"] / len(after) <= 0.51
    await engine.stop()


async def test_team_leaving_and_returning_cannot_jump_the_line() -> None:
    gate = make_gate(capacity=1)
    await gate.acquire("x", 1.0, HI)
    waiters = Waiters(gate)
    for i in range(3):
        waiters.add(f"a{i}", team="a")
    waiters.add("b0", team="b")
    await settle()
    gate.release()  # a0 (first to enter)
    await settle()
    gate.release()  # b0
    await settle()
    waiters.add("b1", team="b")  # b re-enters right after being served: its tag is behind a's
    await settle()
    gate.release()
    await settle()
    assert waiters.order == ["a0", "b0", "a1"]
    await waiters.close()
    gate.release()


# -- cancellation and capacity changes --------------------------------------------------------


async def test_cancelled_waiter_leaves_the_queue_and_the_slot_goes_to_the_next() -> None:
    gate = make_gate(capacity=1)
    await gate.acquire("t", 1.0, HI)
    waiters = Waiters(gate)
    waiters.add("w1")
    waiters.add("w2")
    await settle()
    waiters.tasks["w1"].cancel()
    await settle()
    assert gate.waiting == 1 and gate.stats().cancelled_while_waiting == 1
    gate.release()
    await settle()
    assert waiters.order == ["w2"] and gate.in_flight == 1
    gate.release()
    assert (gate.in_flight, gate.waiting) == (0, 0)
    await waiters.close()


async def test_cancelled_right_after_being_granted_passes_the_slot_on() -> None:
    gate = make_gate(capacity=1)
    await gate.acquire("t", 1.0, HI)
    waiters = Waiters(gate)
    waiters.add("w1")
    waiters.add("w2")
    await settle()
    gate.release()  # w1 is granted synchronously but has not resumed yet
    waiters.tasks["w1"].cancel()  # the client goes away in the same tick
    await settle()
    assert waiters.tasks["w1"].cancelled()
    assert waiters.order == ["w2"]
    assert (gate.in_flight, gate.waiting) == (1, 0)
    gate.release()
    assert gate.in_flight == 0
    assert await gate.acquire("t", 1.0, HI) == 0.0
    gate.release()
    await waiters.close()


async def test_cancelled_in_the_same_tick_as_a_release_is_skipped_not_granted() -> None:
    gate = make_gate(capacity=1)
    await gate.acquire("t", 1.0, HI)
    waiters = Waiters(gate)
    waiters.add("w1")
    waiters.add("w2")
    await settle()
    waiters.tasks["w1"].cancel()  # its cleanup has not run yet when the slot frees up
    gate.release()
    await settle()
    assert waiters.order == ["w2"]
    assert (gate.in_flight, gate.waiting) == (1, 0)
    assert gate.stats().cancelled_while_waiting == 1
    gate.release()
    assert gate._self_check() == []
    await waiters.close()


async def test_last_waiter_granted_then_cancelled_frees_the_slot() -> None:
    gate = make_gate(capacity=1)
    await gate.acquire("t", 1.0, HI)
    task = asyncio.create_task(gate.acquire("t", 1.0, HI))
    await settle()
    gate.release()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (gate.in_flight, gate.waiting) == (0, 0)


async def test_set_capacity_up_lets_waiters_in_at_once() -> None:
    gate = make_gate(capacity=1)
    await gate.acquire("t", 1.0, HI)
    waiters = Waiters(gate)
    for i in range(3):
        waiters.add(f"w{i}")
    await settle()
    gate.set_capacity(3)
    assert (gate.in_flight, gate.waiting) == (3, 1)
    await settle()
    assert waiters.order == ["w0", "w1"]
    await waiters.close()
    for _ in range(3):
        gate.release()
    assert (gate.in_flight, gate.waiting) == (0, 0)


async def test_set_capacity_down_lets_in_flight_drain_before_anyone_else_enters() -> None:
    gate = make_gate(capacity=3)
    for _ in range(3):
        await gate.acquire("t", 1.0, HI)
    waiters = Waiters(gate)
    waiters.add("w")
    await settle()
    gate.set_capacity(1)
    assert gate.in_flight == 3  # nothing is taken away from running work
    gate.release()
    gate.release()
    await settle()
    assert (gate.in_flight, gate.waiting, waiters.order) == (1, 1, [])
    gate.release()  # now below the new capacity: the waiter gets it
    await settle()
    assert (gate.in_flight, gate.waiting, waiters.order) == (1, 0, ["w"])
    gate.release()
    await waiters.close()


# -- retry-after ------------------------------------------------------------------------------


def test_retry_after_estimate_scales_with_the_queue_ahead_and_is_bounded() -> None:
    assert retry_after_estimate(10, None) == UNKNOWN_RETRY_S
    assert retry_after_estimate(9, 0.5) == pytest.approx(5.0)
    assert retry_after_estimate(0, 0.001) == pytest.approx(0.1)
    assert retry_after_estimate(10_000, 1.0) == MAX_RETRY_S


async def test_retry_after_uses_the_observed_service_pace_and_the_requests_ahead() -> None:
    gate = make_gate(capacity=1, max_queue=20)
    engine = Engine(gate)
    engine.clients("bg", 21, priority=LO)  # one running, twenty waiting: the queue is full
    await engine.start()
    for _ in range(5):
        await engine.step(pause=0.01)
    with pytest.raises(QueueRejected) as bg:
        await gate.acquire("x", 1.0, LO)
    with pytest.raises(QueueRejected) as interactive:
        await gate.acquire("x", 1.0, HI)  # nobody of its class ahead of it
    assert interactive.value.retry_after_s < bg.value.retry_after_s <= MAX_RETRY_S
    await engine.stop()


# -- no leaks under random load ---------------------------------------------------------------


async def test_capacity_is_never_exceeded_under_random_acquire_release_cancel() -> None:
    rng = random.Random(20261129)
    gate = make_gate(capacity=3, max_queue=8, waits={HI: 0.003, LO: 0.02})
    holding: list[asyncio.Task[str]] = []
    pending: set[asyncio.Task[str]] = set()
    all_tasks: list[asyncio.Task[str]] = []
    seen: Counter[str] = Counter()

    async def client(team: str, weight: float, priority: Priority) -> str:
        try:
            await gate.acquire(team, weight, priority)
        except QueueRejected as err:
            seen[err.reason] += 1
            return err.reason
        task = asyncio.current_task()
        assert task is not None
        holding.append(task)  # the test releases for it, then cancels it
        await asyncio.Event().wait()
        return "unreachable"

    ceiling = gate.capacity
    for _ in range(4000):
        op = rng.random()
        if op < 0.45:
            me = asyncio.create_task(client(f"t{rng.randrange(5)}", rng.choice((1.0, 2.0, 0.5)),
                                            rng.choice((HI, LO))))
            pending.add(me)
            all_tasks.append(me)
        elif op < 0.75 and holding:
            done = holding.pop(rng.randrange(len(holding)))
            gate.release()
            done.cancel()
            if rng.random() < 0.3:  # whoever was just granted is gone before it resumes
                for task in pending:
                    task.cancel()
        elif op < 0.85:
            waiting = [t for t in all_tasks if t in pending]  # creation order: reproducible
            for task in rng.sample(waiting, min(2, len(waiting))):
                task.cancel()
        elif op < 0.9:
            gate.set_capacity(rng.randrange(0, 6))
        elif op < 0.95:
            await asyncio.sleep(0.001)  # let some maximum waits run out
        await settle(6)
        pending = {t for t in pending if not t.done() and t not in holding}
        assert gate.in_flight <= max(gate.capacity, ceiling)  # shrinking only lets work drain
        ceiling = max(gate.capacity, min(ceiling, gate.in_flight))
        assert gate.in_flight == len(holding)
        assert gate.waiting <= len(pending) and gate.waiting <= 8
        assert sum(gate.waiting_by_priority().values()) == gate.waiting
        assert gate._self_check() == []

    for task in all_tasks:
        task.cancel()
    for _ in holding:
        gate.release()
    await asyncio.gather(*all_tasks, return_exceptions=True)
    assert (gate.in_flight, gate.waiting) == (0, 0)
    assert gate._self_check() == []
    stats = gate.stats()
    assert stats.rejected["queue_full"] == seen["queue_full"] > 0
    assert stats.rejected["wait_exceeded"] >= seen["wait_exceeded"] > 0
    assert stats.cancelled_while_waiting > 0
    gate.set_capacity(1)
    assert await gate.acquire("t", 1.0, HI) == 0.0  # nothing stale anywhere
    gate.release()


class Model:
    """The policy written naively (a scan, no heap, no lazy deletion) to check the real gate against."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.in_flight, self.seq = capacity, 0, 0
        self.queues: dict[tuple[int, str], deque[str]] = {}
        self.tags: dict[tuple[int, str], tuple[float, int]] = {}  # backlogged team -> (tag, seq)
        self.finish: dict[tuple[int, str], float] = {}
        self.vtime = {int(p): 0.0 for p in Priority}
        self.weight: dict[str, float] = {}

    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def arrive(self, label: str, key: tuple[int, str], weight: float) -> None:
        if self.in_flight < self.capacity and not self.waiting():
            self.in_flight += 1
            return
        queue = self.queues.setdefault(key, deque())
        if not queue:
            self.seq += 1
            self.tags[key] = (max(self.finish.get(key, 0.0), self.vtime[key[0]]), self.seq)
        queue.append(label)
        self.weight[label] = weight

    def leave(self, label: str) -> None:
        for key, queue in self.queues.items():
            if label in queue:
                queue.remove(label)
                if not queue:
                    del self.tags[key]
                return

    def dispatch(self) -> list[str]:
        granted = []
        while self.in_flight < self.capacity and self.waiting():
            key = min(self.tags, key=lambda k: (k[0], self.tags[k]))
            tag = self.tags[key][0]
            label = self.queues[key].popleft()
            self.vtime[key[0]] = tag
            self.finish[key] = tag + 1.0 / self.weight[label]
            self.seq += 1
            if self.queues[key]:
                self.tags[key] = (self.finish[key], self.seq)
            else:
                del self.tags[key]
            self.in_flight += 1
            granted.append(label)
        return granted


ARRIVE = st.tuples(st.just("arrive"), st.integers(0, 2), st.sampled_from([HI, LO]),
                  st.sampled_from([1.0, 2.0, 3.0]))
FINISH = st.tuples(st.just("finish"))
OPS = st.lists(st.one_of(  # repeated branches weight the mix towards contention
    ARRIVE, ARRIVE, ARRIVE, FINISH, FINISH,
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("capacity"), st.integers(0, 4)),
), min_size=10, max_size=150)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capacity=st.integers(1, 2), ops=OPS)
def test_grant_order_matches_a_naive_model_of_the_policy(capacity: int, ops: list[tuple]) -> None:
    asyncio.run(_replay(capacity, ops))


async def _replay(capacity: int, ops: list[tuple]) -> None:
    gate, model = make_gate(capacity), Model(capacity)
    waiters = Waiters(gate)
    held = 0
    for n, op in enumerate(ops):
        expected: list[str] = []
        if op[0] == "arrive":
            _, team, priority, weight = op
            label = f"r{n}"
            before = model.in_flight
            model.arrive(label, (int(priority), f"team{team}"), weight)
            if model.in_flight > before:
                expected = [label]
            waiters.add(label, team=f"team{team}", weight=weight, priority=priority)
        elif op[0] == "finish" and held:
            held -= 1
            model.in_flight -= 1
            gate.release()
            expected = model.dispatch()
        elif op[0] == "cancel":
            waiting = [k for k, t in waiters.tasks.items() if k not in waiters.order and not t.done()]
            if waiting:
                label = waiting[op[1] % len(waiting)]
                model.leave(label)
                waiters.tasks[label].cancel()
        elif op[0] == "capacity":
            model.capacity = op[1]
            gate.set_capacity(op[1])
            expected = model.dispatch()
        mark = len(waiters.order)
        await settle(4)
        assert waiters.order[mark:] == expected
        held += len(expected)
        assert (gate.in_flight, gate.waiting) == (model.in_flight, model.waiting())
        assert gate._self_check() == []
    await waiters.close()
    for _ in range(held):
        gate.release()
    assert (gate.in_flight, gate.waiting) == (0, 0)
