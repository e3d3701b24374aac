"""The circuit breaker's state machine: named transitions, then any sequence of events."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from inferenceops.routing.breaker import Breaker, BreakerPolicy, State

POLICY = BreakerPolicy(failures_to_open=3, open_s=1.0, max_open_s=8.0, slow_start_s=10.0,
                       slow_start_floor=0.1)


def opened(now: float = 0.0) -> Breaker:
    breaker = Breaker(POLICY)
    for _ in range(3):
        breaker.failed(now, "connect")
    return breaker


def test_consecutive_failures_open_it_and_a_success_in_between_resets_the_count() -> None:
    breaker = Breaker(POLICY)
    breaker.failed(0, "connect")
    breaker.failed(0, "connect")
    breaker.succeeded(0)
    breaker.failed(0, "connect")
    breaker.failed(0, "connect")
    assert breaker.state(0) is State.CLOSED and breaker.admits(0)
    breaker.failed(0, "server_error")
    assert breaker.state(0) is State.OPEN and not breaker.admits(0)
    assert breaker.reason == "server_error" and breaker.opens == 1


def test_busy_never_trips_it() -> None:
    breaker = Breaker(POLICY)
    for _ in range(100):
        breaker.busy(0)
    assert breaker.state(0) is State.CLOSED and breaker.weight(0) == 1.0


def test_after_open_s_one_trial_and_only_one() -> None:
    breaker = opened()
    assert not breaker.begin(0.99)
    assert breaker.state(1.0) is State.HALF_OPEN
    assert breaker.begin(1.0)
    assert not breaker.begin(1.0) and not breaker.admits(1.0)  # the trial is in flight
    breaker.abandon()  # the caller left: another may try
    assert breaker.begin(1.1)


def test_a_failed_trial_reopens_it_for_twice_as_long_up_to_the_cap() -> None:
    breaker = opened()
    now = 0.0
    expected = [2.0, 4.0, 8.0, 8.0]
    for open_for in expected:
        now += breaker.open_for
        assert breaker.begin(now)
        breaker.failed(now, "connect")
        assert breaker.state(now) is State.OPEN and breaker.open_for == open_for


def test_a_good_trial_closes_it_and_the_weight_ramps_up() -> None:
    breaker = opened()
    assert breaker.begin(1.0)
    breaker.succeeded(1.0)
    assert breaker.state(1.0) is State.CLOSED
    assert breaker.weight(1.0) == pytest.approx(0.1)
    assert breaker.weight(6.0) == pytest.approx(0.55)
    assert breaker.weight(11.0) == 1.0
    assert breaker.open_for == POLICY.open_s  # the backoff starts over


def test_probes_half_open_then_close_it() -> None:
    breaker = opened()
    breaker.probe_ok(0.1)  # long before open_s: the engine says it is ready
    assert breaker.state(0.1) is State.HALF_OPEN
    breaker.probe_ok(0.2)
    assert breaker.state(0.2) is State.CLOSED


def test_probe_failures_count_like_failures_and_reopen_a_half_open_one() -> None:
    breaker = Breaker(POLICY)
    for _ in range(3):
        breaker.probe_failed(0, "probe: unreachable")
    assert breaker.state(0) is State.OPEN
    assert breaker.state(1.0) is State.HALF_OPEN
    breaker.probe_failed(1.0, "probe: unreachable")
    assert breaker.state(1.0) is State.OPEN and breaker.open_for == 2.0


def test_suspected_hung_opens_at_once() -> None:
    breaker = Breaker(POLICY)
    breaker.suspect(5.0, "hung")
    assert breaker.state(5.0) is State.OPEN and breaker.reason == "hung"
    assert breaker.retry_in(5.5) == pytest.approx(0.5)


EVENTS = st.sampled_from(["succeeded", "busy", "failed", "suspect", "probe_ok", "probe_failed",
                          "begin", "abandon"])


class BreakerMachine(RuleBasedStateMachine):
    """Any sequence of outcomes and clock steps, against a small model of what must hold."""

    @initialize()
    def start(self) -> None:
        self.breaker = Breaker(POLICY)
        self.now = 0.0
        self.failures_in_a_row = 0  # failures since the last success or opening, while closed
        self.trials = 0  # trials claimed and not yet decided

    @rule(seconds=st.floats(min_value=0, max_value=20, allow_nan=False))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(event=EVENTS)
    def happens(self, event: str) -> None:
        b, now = self.breaker, self.now
        before = b.state(now)
        was_trial = b.trial
        if event == "begin":
            allowed = b.begin(now)
            assert allowed == (before is State.CLOSED or (before is State.HALF_OPEN
                                                            and not was_trial))
            if before is State.HALF_OPEN and allowed:
                assert b.trial
            return
        if event in ("succeeded", "busy"):
            getattr(b, event)(now)
            after = b.state(now)
            if before is State.CLOSED:
                assert after is State.CLOSED and b.failures == 0  # busy is never a failure
            elif before is State.HALF_OPEN:
                assert after is State.CLOSED and b.weight(now) <= POLICY.slow_start_floor + 1e-9
            else:
                assert after is State.OPEN
        elif event == "failed":
            count = b.failures
            b.failed(now, "x")
            after = b.state(now)
            if before is State.CLOSED:
                assert (after is State.OPEN) == (count + 1 >= POLICY.failures_to_open)
            else:
                assert after is State.OPEN
        elif event == "suspect":
            b.suspect(now, "hung")
            assert b.state(now) is State.OPEN
        elif event == "probe_ok":
            b.probe_ok(now)
            after = b.state(now)
            expected = {State.OPEN: State.HALF_OPEN, State.HALF_OPEN: State.CLOSED,
                        State.CLOSED: State.CLOSED}[before]
            assert after is expected
        elif event == "probe_failed":
            b.probe_failed(now, "x")
            if before is State.HALF_OPEN:
                assert b.state(now) is State.OPEN
        else:
            b.abandon()
            assert not b.trial

    @invariant()
    def consistent(self) -> None:
        b, now = self.breaker, self.now
        state = b.state(now)
        assert POLICY.open_s <= b.open_for <= POLICY.max_open_s
        assert 0.0 <= b.weight(now) <= 1.0
        if state is State.OPEN:
            assert not b.admits(now) and b.weight(now) == 0.0 and b.retry_in(now) > 0
            assert not b.trial
        if state is State.CLOSED:
            assert b.admits(now) and not b.trial and b.failures < POLICY.failures_to_open
            assert b.weight(now) >= POLICY.slow_start_floor


BreakerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40,
                                            deadline=None)
TestBreaker = BreakerMachine.TestCase
