"""A minimal in-process ASGI client for driving the simulator app directly.

The app is real; only the server is replaced: ``receive`` hands over the body
once and then blocks until the test "disconnects", ``send`` records messages.
Helpers live on the client (``metrics()``) because this folder is not a package.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
import pytest_asyncio

from inferenceops.engines.simulator import (
    SimulatorApp,
    SimulatorProfile,
    build_simulator_app,
    load_profile,
)

_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return orjson.loads(self.body)


class Stream:
    """One streaming request in flight: iterate SSE payloads, or disconnect."""

    def __init__(self, app: SimulatorApp, path: str, body: bytes, fail_send_after: int | None):
        self.status: int | None = None
        self.started = time.perf_counter()
        self.arrivals: list[float] = []  # seconds since start, per SSE event
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._disconnected = asyncio.Event()
        self._body_sends = 0
        self._fail_after = fail_send_after
        self._buffer = b""
        self._body: bytes | None = body
        self.task = asyncio.ensure_future(app(_scope("POST", path), self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._disconnected.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self._body_sends += 1
            if self._fail_after is not None and self._body_sends > self._fail_after:
                raise OSError("simulated broken pipe")
        await self._queue.put(message)

    def disconnect(self) -> None:
        self._disconnected.set()

    async def events(self, timeout: float = 10.0) -> AsyncIterator[str]:
        """SSE ``data:`` payloads as they arrive (ends at the end of the body)."""
        deadline = time.perf_counter() + timeout
        while True:
            message = await asyncio.wait_for(self._queue.get(), deadline - time.perf_counter())
            if message["type"] == "http.response.start":
                self.status = message["status"]
                continue
            self._buffer += message.get("body", b"")
            while b"\n\n" in self._buffer:
                event, self._buffer = self._buffer.split(b"\n\n", 1)
                self.arrivals.append(time.perf_counter() - self.started)
                yield event.decode().removeprefix("data: ")
            if not message.get("more_body", False):
                return


class AsgiClient:
    def __init__(self, app: SimulatorApp) -> None:
        self.app = app

    async def request(
        self, method: str, path: str, json: Any = None, content: bytes | None = None
    ) -> Response:
        body = orjson.dumps(json) if json is not None else (content or b"")
        delivered = False
        done = asyncio.Event()
        messages: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        await self.app(_scope(method, path), receive, send)
        done.set()
        start = messages[0]
        headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        payload = b"".join(m.get("body", b"") for m in messages[1:])
        return Response(start["status"], headers, payload)

    async def post(self, path: str, json: Any = None, content: bytes | None = None) -> Response:
        return await self.request("POST", path, json=json, content=content)

    async def get(self, path: str) -> Response:
        return await self.request("GET", path)

    def stream(self, path: str, json: Any, *, fail_send_after: int | None = None) -> Stream:
        return Stream(self.app, path, orjson.dumps(json), fail_send_after)

    async def metrics(self) -> dict[str, float]:
        """Series name → value, summed over label sets (histograms skipped)."""
        text = (await self.get("/metrics")).body.decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            match = _SAMPLE_RE.match(line)
            if match and not line.startswith("#"):
                name = match.group(1)
                out[name] = out.get(name, 0.0) + float(match.group(3))
        return out

    async def metrics_text(self) -> str:
        return (await self.get("/metrics")).body.decode()

    async def wait_for(
        self, predicate: Callable[[dict[str, float]], bool], timeout: float = 5.0
    ) -> dict[str, float]:
        """Poll /metrics until ``predicate`` holds; fail after ``timeout`` seconds."""
        deadline = time.perf_counter() + timeout
        while True:
            values = await self.metrics()
            if predicate(values):
                return values
            if time.perf_counter() > deadline:
                raise AssertionError(f"metrics condition not met in {timeout}s: {values}")
            await asyncio.sleep(0.001)


def _scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }


AppFactory = Callable[..., Awaitable[AsgiClient]]


@pytest_asyncio.fixture
async def make_client() -> AsyncIterator[AppFactory]:
    """Build a simulator app (profile name or object, optional overrides) and its client."""
    apps: list[SimulatorApp] = []

    async def factory(
        profile: str | SimulatorProfile = "test-fast",
        *,
        model: str = "sim-model",
        seed: int = 0,
        **overrides: Any,
    ) -> AsgiClient:
        prof = load_profile(profile) if isinstance(profile, str) else profile
        if overrides:
            prof = prof.override(**overrides)
        app = build_simulator_app(prof, model=model, seed=seed)
        apps.append(app)
        return AsgiClient(app)

    yield factory
    for app in apps:
        await app.aclose()


@pytest.fixture
def words() -> Callable[[int, str], str]:
    """A prompt of exactly ``n`` tokens (distinct words) under the simulator's tokeniser."""

    def build(n: int, tag: str = "w") -> str:
        return " ".join(f"{tag}{i}" for i in range(n))

    return build
