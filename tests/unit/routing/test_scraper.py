"""The engine-metrics scraper against simulated engines served over HTTP: decisions follow their /metrics."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from tests.support.asgi import request

from inferenceops.engines.simulator import build_simulator_app, load_profile
from inferenceops.engines.simulator.app import SimulatorApp
from inferenceops.platform import Deployment, Replica
from inferenceops.routing import SCRAPED_STRATEGIES, EngineBoard, EngineLoadStrategy, RouteFacts
from inferenceops.routing.engine_metrics import EngineLoad
from inferenceops.routing.scraper import EngineScraper, metrics_url
from inferenceops.supervisor import Supervisor

#: One sequence at a time, slow steps: every further request waits in the engine's queue.
SLOW = load_profile("test-fast").override(max_num_seqs=1, decode_step_ms_base=200.0)


@dataclass
class Engines:
    """Simulators behind one aiohttp server: ``/<name>/...`` reaches simulator ``name``."""

    port: int = 0
    apps: dict[str, SimulatorApp] = field(default_factory=dict)
    hang: asyncio.Event = field(default_factory=asyncio.Event)  # set at the end: hung replies end

    def replica(self, name: str) -> Replica:
        return Replica(name, f"http://127.0.0.1:{self.port}/{name}/v1")

    async def handle(self, req: web.Request) -> web.Response:
        name, _, rest = req.path.lstrip("/").partition("/")
        if name == "hung":
            await self.hang.wait()
        app = self.apps.get(name)
        if app is None:
            return web.Response(status=404, text="no such engine")
        answer = await request(app, req.method, "/" + rest)
        return web.Response(status=answer.status, body=answer.body)

    def queue_up(self, name: str, n: int) -> list[asyncio.Task[object]]:
        """``n`` chat requests to ``name`` that stay in the engine (they are cancelled at the end)."""
        body = orjson.dumps({"model": "m", "max_tokens": 500,
                             "messages": [{"role": "user", "content": "hello"}]})
        return [asyncio.create_task(request(self.apps[name], "POST", "/v1/chat/completions",
                                            body=body, timeout=600)) for _ in range(n)]


@pytest.fixture
async def engines() -> AsyncIterator[Engines]:
    engines = Engines()
    for name in ("busy", "idle"):
        engines.apps[name] = build_simulator_app(SLOW, model="m")
    server = web.Server(engines.handle)
    runner = web.ServerRunner(server, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    engines.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield engines
    engines.hang.set()
    await runner.cleanup()
    for app in engines.apps.values():
        await app.aclose()


def catalog(*deployments: Deployment) -> Callable[[], list[Deployment]]:
    current = list(deployments)
    return lambda: current


async def until(check: Callable[[], bool]) -> None:
    """Wait (on the engine's own progress, bounded by the test timeout) until ``check`` holds."""
    while not check():
        await asyncio.sleep(0.01)


def test_metrics_live_at_the_server_root() -> None:
    assert metrics_url("http://h:8000/v1") == "http://h:8000/metrics"
    assert metrics_url("http://h:8000/v1/") == "http://h:8000/metrics"
    assert metrics_url("http://127.0.0.1:8080/_sim/chat-0/v1") == "http://127.0.0.1:8080/_sim/chat-0/metrics"
    assert metrics_url("https://sglang.internal:30000") == "https://sglang.internal:30000/metrics"


async def test_a_replica_whose_engine_shows_a_long_queue_is_avoided(engines: Engines) -> None:
    dep = Deployment("chat", "openai", "m", (engines.replica("busy"), engines.replica("idle")),
                     routing="engine_load")
    board = EngineBoard()
    scraper = EngineScraper(catalog(dep), board, scraped=SCRAPED_STRATEGIES, timeout_s=5)
    held = engines.queue_up("busy", 6)
    try:
        await until(lambda: engines.apps["busy"].engine.gauges().waiting == 5)
        seen = await scraper.scrape_once()
        assert seen == {"busy": EngineLoad(running=1, waiting=5, kv_usage=seen["busy"].kv_usage),  # type: ignore[union-attr]
                        "idle": EngineLoad(running=0, waiting=0, kv_usage=0)}
        strategy = EngineLoadStrategy(board, rng=random.Random(5))
        assert {strategy.pick(dep, RouteFacts(), ()).id for _ in range(30)} == {"idle"}
        # The queue moves to the other engine: the next scrape turns the decision around.
        for task in held:
            task.cancel()
        held = engines.queue_up("idle", 6)
        await until(lambda: engines.apps["idle"].engine.gauges().waiting == 5
                    and engines.apps["busy"].engine.gauges().running == 0)
        await scraper.scrape_once()
        assert {strategy.pick(dep, RouteFacts(), ()).id for _ in range(30)} == {"busy"}
    finally:
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)


async def test_an_unreadable_replica_is_counted_and_falls_back_to_in_flight(
        engines: Engines) -> None:
    clock = [100.0]
    board = EngineBoard(stale_after_s=3.0, clock=lambda: clock[0])
    dead = Replica("dead", "http://127.0.0.1:9/v1")  # the discard port: nobody listens
    dep = Deployment("chat", "openai", "m", (engines.replica("idle"), dead,
                                             engines.replica("hung"), engines.replica("nope")),
                     routing="engine_load")
    scraper = EngineScraper(catalog(dep), board, scraped=SCRAPED_STRATEGIES, timeout_s=0.3)
    seen = await scraper.scrape_once()
    assert seen["idle"] is not None
    assert seen["dead"] is None and seen["hung"] is None and seen["nope"] is None  # 404
    assert scraper.failures == {"dead": 1, "hung": 1, "nope": 1}
    assert board.fresh("idle") is not None and board.fresh("dead") is None
    board.acquire("idle")
    board.acquire("dead")
    board.acquire("dead")
    assert board.load("dead") == 2  # never scraped: its in-flight count
    assert board.load("idle") == 1  # fresh scrape (idle) + one sent since
    clock[0] += 10
    assert board.load("idle") == 1  # stale now: in-flight
    await scraper.scrape_once()
    assert scraper.failures["dead"] == 2 and "idle" not in scraper.failures
    await scraper.stop()


async def test_only_engine_load_deployments_are_scraped_and_leavers_are_forgotten(
        engines: Engines) -> None:
    board = EngineBoard()
    scraped = Deployment("a", "openai", "m", (engines.replica("busy"),), routing="engine_load")
    other = Deployment("b", "openai", "m", (engines.replica("idle"),), routing="prefix_affinity")
    current = [scraped, other]
    scraper = EngineScraper(lambda: current, board, scraped=SCRAPED_STRATEGIES, timeout_s=5)
    assert set(await scraper.scrape_once()) == {"busy"}
    assert board.fresh("busy") is not None
    current.remove(scraped)
    assert await scraper.scrape_once() == {}
    assert board.fresh("busy") is None and board.scraped_at("busy") is None


async def test_the_scraper_runs_under_the_supervisor(engines: Engines) -> None:
    board = EngineBoard()
    dep = Deployment("a", "openai", "m", (engines.replica("idle"),), routing="engine_load")
    scraper = EngineScraper(catalog(dep), board, scraped=SCRAPED_STRATEGIES, interval_s=0.05,
                            timeout_s=5)
    supervisor = Supervisor()
    supervisor.add(scraper)
    await supervisor.start()
    try:
        await until(lambda: scraper.rounds >= 3)
        assert board.fresh("idle") == EngineLoad()
        assert supervisor.crashes == {}
    finally:
        with suppress(Exception):
            await supervisor.stop()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        EngineScraper(catalog(), EngineBoard(), scraped=SCRAPED_STRATEGIES, interval_s=0)


def test_settings_whose_stale_window_a_slow_scrape_outlasts_are_refused() -> None:
    from pydantic import ValidationError

    from inferenceops.settings import Settings

    Settings(engine_metrics_interval_s=0.5, engine_metrics_timeout_s=2.0,
             engine_metrics_stale_after=6)  # 3 s > 2.5 s
    for stale_after in (4, 5):  # 2 s, 2.5 s: not longer than timeout + interval
        with pytest.raises(ValidationError, match="raise engine_metrics_stale_after"):
            Settings(engine_metrics_interval_s=0.5, engine_metrics_timeout_s=2.0,
                     engine_metrics_stale_after=stale_after)


async def test_a_hung_replica_does_not_make_the_others_scrapes_stale(engines: Engines) -> None:
    """A round waits for its slowest scrape, and each round records the replicas that answered:
    with the settings' rule kept (stale window longer than timeout + interval), a replica that
    answers at once stays fresh all along beside one that never answers. The window is far
    longer than a round (2 s against 0.3 s), so a loaded machine's late wake-ups do not count."""
    interval_s, timeout_s, stale_after = 0.1, 0.2, 20
    board = EngineBoard(stale_after_s=interval_s * stale_after)
    dep = Deployment("chat", "openai", "m", (engines.replica("idle"), engines.replica("hung")),
                     routing="engine_load")
    scraper = EngineScraper(catalog(dep), board, scraped=SCRAPED_STRATEGIES,
                            interval_s=interval_s, timeout_s=timeout_s)
    supervisor = Supervisor()
    supervisor.add(scraper)
    await supervisor.start()
    try:
        await until(lambda: board.fresh("idle") is not None)
        first = scraper.rounds
        stale_seen = 0
        while scraper.rounds < first + 5:
            stale_seen += board.fresh("idle") is None
            await asyncio.sleep(0.01)
        assert stale_seen == 0
        assert board.fresh("hung") is None and scraper.failures["hung"] >= 5
    finally:
        with suppress(Exception):
            await supervisor.stop()


def test_every_serving_process_runs_the_scraper_on_the_catalog_it_serves(tmp_path: Path) -> None:
    """``build_process`` supervises the scraper, sharing its board with the router (no I/O yet)."""
    from inferenceops.app import build_process
    from inferenceops.settings import Settings

    state = build_process(Settings(data_dir=tmp_path), serve_admin=False)
    (scraper,) = [s for s in state.supervisor.services if isinstance(s, EngineScraper)]
    assert scraper.name == "engine-metrics" and scraper.interval_s == 1.0
    strategy = state.pipeline.forwarder.router.strategy(
        Deployment("d", "openai", "m", (), routing="engine_load"))
    assert isinstance(strategy, EngineLoadStrategy) and strategy.board is scraper.board
    assert scraper.board.stale_after_s == 3.0
    assert list(scraper._deployments()) == list(state.snapshot.catalog.deployments.values())
