"""The admission heartbeat's pace and what it says about an outage (``admission.instance``).

``test_instance`` runs the heartbeat against Redis; these drive it against a
scripted ledger and pin what mutmut found loose (``make mutation``): it sleeps
out each interval on a fixed pace (and never spins when a beat ran late), and an
outage is told once — a warning at the first failure, an error once the
instance may be counted dead, a warning with the count when a beat gets through
— then told again, whole, for the next outage. Only a shared ledger gets a
heartbeat, its failures counted on the admission metrics, and a liveness that
could let Redis forget a live instance is refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest

from inferenceops.admission import instance as instance_module
from inferenceops.admission.control import AdmissionControl
from inferenceops.admission.instance import InstanceHeartbeat, Liveness, instance_heartbeat
from inferenceops.admission.ledger import LedgerUnavailable
from inferenceops.admission.memory_ledger import MemoryLedger
from inferenceops.admission.metrics import AdmissionMetrics
from inferenceops.admission.redis_ledger import RedisLedger


class ScriptedLedger:
    """A ``Beating`` ledger whose beats fail or succeed as the test says."""

    instance_id = "inst-1"

    def __init__(self, interval_s: float = 0.5) -> None:
        self.liveness = Liveness(interval_s=interval_s, ttl_s=4 * interval_s, check_s=0)
        self.live = True
        self.failing = False
        self.slow_s = 0.0
        self.beats = 0
        self.supervised = self.left = False

    def supervise(self) -> None:
        self.supervised = True

    async def beat(self) -> None:
        self.beats += 1
        if self.slow_s:
            time.sleep(self.slow_s)  # one beat that blocks past its interval
            self.slow_s = 0.0
        if self.failing:
            raise LedgerUnavailable(f"connection refused (beat {self.beats})")

    async def leave(self) -> None:
        self.left = True
        if self.failing:
            raise LedgerUnavailable("connection refused")


def said(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records
            if r.name == "inferenceops.admission.instance"]


async def test_an_outage_is_told_once_and_the_next_one_is_told_again(
        caplog: pytest.LogCaptureFixture) -> None:
    ledger, metrics = ScriptedLedger(), AdmissionMetrics()
    heartbeat = InstanceHeartbeat(ledger, metrics)
    caplog.set_level(logging.INFO, "inferenceops.admission.instance")
    await heartbeat.start()
    assert ledger.supervised and heartbeat.beats == 1
    assert said(caplog) == [(logging.INFO, f"admission instance inst-1 (pid {os.getpid()}): "
                                           "heartbeat every 0.5s, ttl 2s")]
    for first_failed in (2, 7):
        caplog.clear()
        ledger.failing = True
        assert await heartbeat.beat_once() is False
        assert await heartbeat.beat_once() is False
        ledger.live = False  # long enough that Redis may have forgotten the instance
        assert await heartbeat.beat_once() is False
        assert await heartbeat.beat_once() is False
        ledger.failing, ledger.live = False, True
        assert await heartbeat.beat_once() is True
        assert said(caplog) == [
            (logging.WARNING, "heartbeat of admission instance inst-1 failed: connection refused "
                              f"(beat {first_failed})"),
            (logging.ERROR, "admission instance inst-1 has not reached Redis for 2s: other replicas "
                            "may free its slots and reservations now; admissions that take them are "
                            "refused (or unmetered with admission_fail_open) until a heartbeat gets "
                            "through"),
            (logging.WARNING, "heartbeat of admission instance inst-1 is back after 4 failed attempts"),
        ]
    assert metrics.heartbeat_failures == 8 and heartbeat.beats == 3


async def test_a_heartbeat_that_cannot_leave_says_so(caplog: pytest.LogCaptureFixture) -> None:
    ledger = ScriptedLedger()
    ledger.failing = True
    caplog.set_level(logging.WARNING, "inferenceops.admission.instance")
    await InstanceHeartbeat(ledger).stop()
    assert ledger.left
    assert said(caplog) == [(logging.WARNING, "could not remove the heartbeat of instance inst-1 (its "
                                              "leases are freed once it expires): connection refused")]


async def test_beats_keep_a_fixed_pace_and_a_late_one_does_not_make_it_spin(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = ScriptedLedger(interval_s=0.05)
    heartbeat = InstanceHeartbeat(ledger)
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        slept.append(delay)
        if len(slept) == 2:
            ledger.slow_s = 0.12  # the next beat overruns two intervals
        await real_sleep(delay)

    monkeypatch.setattr(instance_module.asyncio, "sleep", sleep)
    task = asyncio.ensure_future(heartbeat.run())
    for _ in range(500):
        if ledger.beats >= 6:
            break
        await real_sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Every beat but the one right after the overrun waited for its turn (never more than an
    # interval); after the overrun the pace restarts from then instead of hurrying to catch up.
    assert ledger.beats - len(slept) <= 1
    assert len(slept) >= 4 and all(0.0 < d <= 0.05 for d in slept)


async def test_only_a_shared_ledger_gets_a_heartbeat_and_its_failures_are_counted() -> None:
    assert instance_heartbeat(None) is None
    assert instance_heartbeat(AdmissionControl(MemoryLedger())) is None
    admission = AdmissionControl(RedisLedger("redis://127.0.0.1:1/0", timeout_s=0.3))
    try:
        heartbeat = instance_heartbeat(admission)
        assert heartbeat is not None
        assert await heartbeat.beat_once() is False
        assert admission.metrics.heartbeat_failures == 1
    finally:
        await admission.ledger.close()


@pytest.mark.parametrize(("liveness", "words"), [
    ({"interval_s": 0.0}, "heartbeat interval must be > 0 s, not 0.0"),
    ({"interval_s": 2.0, "ttl_s": 3.0}, "heartbeat ttl (3.0 s) must be at least twice the "),
    ({"check_s": -1.0}, "liveness check period must be >= 0 s, not -1.0"),
])
def test_a_liveness_that_could_kill_a_live_instance_is_refused(liveness: dict[str, float],
                                                                words: str) -> None:
    with pytest.raises(ValueError) as info:
        Liveness(**liveness)
    assert str(info.value).startswith(words)
