"""Fixtures for the integration tier: fake engines, the main gateway, extra gateways.

The main gateway (session scope, started once) fronts one FakeUpstream with a
deployment per fake behaviour, so every error path is one model name away.
Tests needing other settings start their own through ``spawn_gateway``, which
stops them when the test ends. A failing test gets the output of the gateways
it used appended to its report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.integration._harness import (
    ADMIN_KEY,
    FakeUpstreams,
    Gateway,
    SpawnGateway,
    blackhole_port,
    closed_port,
)
from tests.integration._support import MAX_BODY_BYTES, main_platform
from tests.support.fake_upstream import FakeUpstream

_USED_GATEWAYS = pytest.StashKey[list[Gateway]]()


@pytest.fixture(scope="session")
def upstreams() -> Iterator[FakeUpstreams]:
    servers = FakeUpstreams()
    yield servers
    servers.close()


@pytest.fixture(scope="session")
def fake() -> FakeUpstream:
    """The FakeUpstream behind the main gateway; its ``requests`` show what was forwarded."""
    return FakeUpstream()


@pytest.fixture(scope="session")
def slow_fake() -> FakeUpstream:
    """A FakeUpstream whose streams take about two seconds (10 chunks, 0.2 s apart)."""
    return FakeUpstream(stream_chunks=10, chunk_delay_s=0.2)


@pytest.fixture(scope="session")
def slow_fake_url(upstreams: FakeUpstreams, slow_fake: FakeUpstream) -> str:
    return upstreams.serve(slow_fake)


@pytest.fixture(scope="session")
def refused_port() -> Iterator[int]:
    with closed_port() as port:
        yield port


@pytest.fixture(scope="session")
def unreachable_port() -> Iterator[int]:
    with blackhole_port() as port:
        yield port


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstreams: FakeUpstreams,
            fake: FakeUpstream, slow_fake_url: str, refused_port: int,
            unreachable_port: int) -> Iterator[Gateway]:
    """The main gateway, started once; body limit lowered so 413 is cheap to reach."""
    config = main_platform(upstreams.serve(fake), slow_fake_url,
                           f"http://127.0.0.1:{refused_port}/v1",
                           f"http://127.0.0.1:{unreachable_port}/v1")
    gw = Gateway(tmp_path_factory.mktemp("main"), config=config, name="main",
                 env={"INFERENCEOPS_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
                      # Its tests look at one failing request at a time: circuit breakers that
                      # open after a few would change what the next test sees
                      # (test_fleet_health.py tests them on a gateway of its own).
                      "INFERENCEOPS_BREAKER_FAILURES": "1000000"})
    try:
        yield gw.wait_ready()
    finally:
        gw.stop()


@pytest.fixture(scope="session")
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    # No SDK retries: a test must see exactly what one request got.
    with openai.OpenAI(base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0,
                       timeout=30) as sdk:
        yield sdk


@pytest.fixture
async def aclient(gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=ADMIN_KEY, max_retries=0,
                                  timeout=30) as sdk:
        yield sdk


@pytest.fixture
def spawn_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SpawnGateway]:
    """Start extra gateways (``Gateway`` keyword arguments); all stopped when the test ends."""
    started: list[Gateway] = []
    request.node.stash[_USED_GATEWAYS] = started

    def spawn(*, wait: bool = True, **kwargs: Any) -> Gateway:
        kwargs.setdefault("name", f"gw{len(started)}")
        gw = Gateway(tmp_path / kwargs["name"], **kwargs)
        started.append(gw)
        return gw.wait_ready() if wait else gw

    yield spawn
    for gw in started:
        gw.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        used = [v for v in funcargs.values() if isinstance(v, Gateway)]
        used += item.stash.get(_USED_GATEWAYS, [])
        for gw in used:
            report.sections.append((f"{gw.name} (port {gw.port}) output", gw.tail()))
    return report
