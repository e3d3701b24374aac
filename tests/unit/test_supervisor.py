"""Background tasks: a crash is logged and the task restarted; stop drains everything."""

from __future__ import annotations

import asyncio

import pytest

from inferenceops.supervisor import Supervisor


async def test_crashing_task_is_restarted_and_stop_cancels_it(
        caplog: pytest.LogCaptureFixture) -> None:
    runs = 0
    forever = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("boom")
        await forever.wait()

    sup = Supervisor(backoff_s=0.001)
    sup.spawn("flaky", flaky)
    for _ in range(100):
        if runs >= 3:
            break
        await asyncio.sleep(0.01)
    assert runs == 3 and sup.crashes == {"flaky": 2}
    assert "background task flaky crashed" in caplog.text
    await sup.stop()


def test_names_are_unique() -> None:
    async def main() -> None:
        sup = Supervisor()
        sup.spawn("x", lambda: asyncio.sleep(1))
        with pytest.raises(ValueError):
            sup.spawn("x", lambda: asyncio.sleep(1))
        await sup.stop()

    asyncio.run(main())


class Recorder:
    """A service that notes what happens to it; ``crash`` makes its run raise that many times."""

    def __init__(self, name: str, log: list[str], *, crash: int = 0, stop_s: float = 0.0) -> None:
        self.name = name
        self._log = log
        self._crash = crash
        self._stop_s = stop_s
        self.runs = 0

    async def start(self) -> None:
        self._log.append(f"start {self.name}")

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= self._crash:
            raise RuntimeError(f"{self.name} crashed")
        await asyncio.Event().wait()

    async def stop(self) -> None:
        await asyncio.sleep(self._stop_s)
        self._log.append(f"stop {self.name}")


async def test_services_start_in_order_and_stop_in_reverse() -> None:
    log: list[str] = []
    sup = Supervisor()
    for name in ("writer", "heartbeat", "feed"):
        sup.add(Recorder(name, log))
    await sup.start()
    assert sup.names == ("writer", "heartbeat", "feed")
    await sup.stop()
    assert log == ["start writer", "start heartbeat", "start feed",
                   "stop feed", "stop heartbeat", "stop writer"]


async def test_a_service_that_crashes_is_restarted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    flaky = Recorder("flaky", log, crash=2)
    sup = Supervisor(backoff_s=0.001)
    sup.add(flaky)
    await sup.start()
    for _ in range(200):
        if flaky.runs >= 3:
            break
        await asyncio.sleep(0.01)
    assert flaky.runs == 3 and sup.crashes == {"flaky": 2}
    assert caplog.text.count("background task flaky crashed") == 2
    await sup.stop()
    assert log == ["start flaky", "stop flaky"]  # started once: only its run is restarted


async def test_a_stop_past_its_deadline_is_abandoned_and_the_others_still_stop(
        caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    sup = Supervisor()
    sup.add(Recorder("writer", log))
    sup.add(Recorder("stuck", log, stop_s=30.0), stop_deadline_s=0.05)
    await sup.start()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await sup.stop()
    assert loop.time() - began < 5.0
    assert log == ["start writer", "start stuck", "stop writer"]
    assert "service stuck did not stop within 0.05s" in caplog.text


async def test_a_failing_start_stops_the_startup() -> None:
    class Broken(Recorder):
        async def start(self) -> None:
            raise RuntimeError("no store")

    log: list[str] = []
    sup = Supervisor()
    sup.add(Recorder("first", log))
    sup.add(Broken("broken", log))
    with pytest.raises(RuntimeError, match="no store"):
        await sup.start()
    await sup.stop()
    assert log == ["start first", "stop broken", "stop first"]


def test_services_are_named_once_and_added_before_start() -> None:
    async def main() -> None:
        sup = Supervisor()
        sup.add(Recorder("x", []))
        with pytest.raises(ValueError, match="already supervised"):
            sup.add(Recorder("x", []))
        await sup.start()
        with pytest.raises(RuntimeError, match="has started"):
            sup.add(Recorder("y", []))
        await sup.stop()

    asyncio.run(main())
