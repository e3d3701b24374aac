"""An application built on its first request: once, off the loop, failures answered and retried.

``OnDemandApp`` is how a serving worker mounts the admin API without loading it at
start; these tests drive it with plain ASGI callables and a hand-set clock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import orjson
import pytest
from tests.support.asgi import request

from inferenceops.gateway.http import ASGIApp, Receive, Scope, Send
from inferenceops.gateway.ondemand import Close, OnDemandApp


async def _hello(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": orjson.dumps({"path": scope["path"]})})


class Builder:
    """A build function that counts its calls, can be held at a gate, and can fail."""

    def __init__(self, *, fail: int = 0) -> None:
        self.calls = 0
        self.threads: list[str] = []
        self.fail = fail  # the first ``fail`` calls raise
        self.gate = threading.Event()
        self.gate.set()
        self.closed = 0

    def __call__(self) -> tuple[ASGIApp, Close | None]:
        self.calls += 1
        self.threads.append(threading.current_thread().name)
        assert self.gate.wait(5)
        if self.calls <= self.fail:
            raise RuntimeError("broken sub-application")
        return _hello, self._close

    async def _close(self) -> None:
        self.closed += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _app(builder: Builder, clock: Clock | None = None, retry_s: float = 5.0) -> OnDemandApp:
    return OnDemandApp("sub-app", builder, what="The sub-application", code="sub_unavailable",
                       retry_s=retry_s, clock=clock or Clock())


async def test_nothing_is_built_before_the_first_request_then_it_serves() -> None:
    builder = Builder()
    app = _app(builder)
    await app.start()
    await app.run()
    assert builder.calls == 0 and not app.built
    resp = await request(app, "GET", "/admin/x")
    assert resp.status == 200 and resp.json() == {"path": "/admin/x"}
    assert builder.calls == 1 and app.built and app.builds == 1
    assert builder.threads[0] != threading.current_thread().name  # built off the event loop
    await request(app, "GET", "/admin/y")
    assert builder.calls == 1


async def test_concurrent_first_requests_build_once_and_all_get_the_app() -> None:
    builder = Builder()
    builder.gate.clear()
    app = _app(builder)
    pending = [asyncio.ensure_future(request(app, "GET", f"/admin/{i}")) for i in range(8)]
    while builder.calls == 0:  # the first build is running (held at the gate)
        await asyncio.sleep(0.01)
    builder.gate.set()
    answers = await asyncio.gather(*pending)
    assert [r.status for r in answers] == [200] * 8
    assert [r.json()["path"] for r in answers] == [f"/admin/{i}" for i in range(8)]
    assert builder.calls == 1 and app.builds == 1


async def test_a_caller_leaving_mid_build_does_not_cancel_it() -> None:
    builder = Builder()
    builder.gate.clear()
    app = _app(builder)
    first = asyncio.ensure_future(request(app, "GET", "/admin/a"))
    while builder.calls == 0:
        await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    second = asyncio.ensure_future(request(app, "GET", "/admin/b"))
    await asyncio.sleep(0.05)
    builder.gate.set()
    assert (await second).status == 200
    assert builder.calls == 1 and app.built


async def test_a_failed_build_is_answered_in_the_openai_shape_and_retried_after_retry_s(
        caplog: pytest.LogCaptureFixture) -> None:
    builder = Builder(fail=1)
    clock = Clock()
    app = _app(builder, clock, retry_s=5.0)
    with caplog.at_level(logging.ERROR, logger="inferenceops.gateway"):
        resp = await request(app, "GET", "/admin/x", headers={"x-request-id": "req-1"})
    assert resp.status == 503
    error = resp.json()["error"]
    assert error["type"] == "service_unavailable" and error["code"] == "sub_unavailable"
    assert error["message"].startswith("The sub-application could not be started")
    assert "broken sub-application" not in resp.body.decode()  # the reason is for the log only
    assert resp.headers["x-request-id"] == "req-1" and resp.headers["retry-after"] == "5"
    assert float(resp.headers["x-inferenceops-overhead-ms"]) >= 0
    assert "broken sub-application" in caplog.text and "Traceback" in caplog.text

    clock.now += 4.9  # within retry_s: answered at once, no second build
    assert (await request(app, "GET", "/admin/x")).status == 503
    assert builder.calls == 1

    clock.now += 0.2
    resp = await request(app, "GET", "/admin/x")
    assert resp.status == 200 and builder.calls == 2 and app.built and app.builds == 2


async def test_requests_waiting_on_a_failing_build_all_get_503_without_building_again() -> None:
    builder = Builder(fail=1)
    builder.gate.clear()
    app = _app(builder)
    pending = [asyncio.ensure_future(request(app, "GET", "/admin/x")) for _ in range(4)]
    while builder.calls == 0:
        await asyncio.sleep(0.01)
    builder.gate.set()
    assert [r.status for r in await asyncio.gather(*pending)] == [503] * 4
    assert builder.calls == 1


async def test_stop_waits_for_a_running_build_then_closes_what_it_built() -> None:
    builder = Builder()
    app = _app(builder)
    await app.stop()  # never built: nothing to close
    assert builder.closed == 0
    builder.gate.clear()
    pending = asyncio.ensure_future(request(app, "GET", "/admin/x"))
    while builder.calls == 0:
        await asyncio.sleep(0.01)
    stopping = asyncio.ensure_future(app.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()
    builder.gate.set()
    await stopping
    assert builder.closed == 1
    assert (await pending).status == 200


async def test_a_build_without_a_close_stops_cleanly() -> None:
    def build() -> tuple[ASGIApp, Close | None]:
        return _hello, None

    app = OnDemandApp("sub-app", build, what="The sub-application", code="sub_unavailable")
    assert (await request(app, "GET", "/admin/x")).status == 200
    await app.stop()


def test_the_scope_without_headers_still_gets_an_answer() -> None:
    """A failing build answers even a scope with no headers (``RequestFacts`` from nothing)."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def go() -> None:
        await _app(Builder(fail=1))({"type": "http", "path": "/admin/"}, receive, send)

    asyncio.run(go())
    assert sent[0]["status"] == 503
