"""What the dispatcher is told (batch.dispatch_feed), and the running executor dispatching by it:
a deployment's lines stay within its window, two teams' batches due together alternate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.unit.batch.batch_world import World, make_world, request_lines
from tests.unit.batch.conftest import KEYS
from tests.unit.conftest import Harness

from inferenceops.batch.dispatch import Dispatcher, EngineMaxima, Load, Window
from inferenceops.batch.dispatch_feed import NO_DEPLOYMENT, LoadReader, item_of
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.sink import CollectingSink
from inferenceops.platform import Deployment, Replica, Snapshot
from inferenceops.routing.engine_board import EngineBoard
from inferenceops.routing.engine_metrics import EngineLoad
from inferenceops.routing.protocol import RouteFacts
from inferenceops.store.records import ClaimedLine


@pytest.fixture
async def world(store_url: str, tmp_path: Path, harness: Harness) -> AsyncIterator[World]:
    w = make_world(store_url, tmp_path, harness)
    yield w
    await w.close()


def _line(team: str | None = "team_a") -> ClaimedLine:
    return ClaimedLine(1, "batch_x", 1, "c1", 0, 10, 1, "/v1/chat/completions", "key_a1",
                       "file-x", datetime(2026, 12, 2, tzinfo=UTC), team)


def test_an_item_names_the_deployment_deadline_team_and_prefix(world: World) -> None:
    snapshot: Snapshot = world.executor._snapshot()
    model = snapshot.catalog.models[0]
    body = {"model": model.name, "messages": [{"role": "system", "content": "You are terse."},
                                              {"role": "user", "content": "hi"}]}
    import orjson
    raw = orjson.dumps({"custom_id": "c1", "body": body})
    found = item_of(_line(), raw, KEYS["a1"], snapshot, "payload")
    assert found.deployment == model.deployment.name
    assert found.team == "team_a" and found.weight == snapshot.policy.weight("team_a")
    assert found.deadline == datetime(2026, 12, 2, tzinfo=UTC).timestamp()
    assert found.prefix == RouteFacts(doc=body).prefix_hash is not None
    unknown = item_of(_line(), b'{"body": {"model": "nope"}}', KEYS["a1"], snapshot, "p")
    broken = item_of(_line(None), b"not json", None, snapshot, "p")
    assert unknown.deployment == broken.deployment == NO_DEPLOYMENT
    assert broken.team == "key_a1"  # no team: the key is its own team


class _Gates:
    def __init__(self, gate: Any) -> None:
        self._gate = gate

    def gate(self, deployment: str) -> Any:
        return self._gate


def test_load_prefers_fresh_engine_scrapes_then_the_gate_then_nothing() -> None:
    from inferenceops.admission.fair_queue import DeploymentGate
    from inferenceops.platform.priority import Priority

    now = [100.0]
    board = EngineBoard(stale_after_s=3.0, clock=lambda: now[0])
    deployment = Deployment("d", "openai", "m", (Replica("r1", "http://a"), Replica("r2", "http://b")),
                            capacity=64)
    gate = DeploymentGate("d", 64, max_queue=10,
                          max_wait_s={Priority.INTERACTIVE: 1.0, Priority.BACKGROUND: 1.0})
    reader = LoadReader(board, _Gates(gate), EngineMaxima())  # type: ignore[arg-type]
    board.record("r1", EngineLoad(running=200, waiting=0))
    board.record("r2", EngineLoad(running=256, waiting=5))
    assert reader.load(deployment) == Load("engine", 456, 3, 64.0)  # capacity: the operator's
    learned = Deployment("d", "openai", "m", deployment.replicas)
    assert reader.load(learned) == Load("engine", 456, 3, 512.0)  # no capacity: learned
    ordered = Deployment("d", "openai", "m", deployment.replicas, capacity=64, engine_priority=True)
    assert reader.load(ordered) == Load("engine", 456, 3, 64.0, ordered=True)
    assert reader.scraped_at(deployment) == 100.0
    now[0] += 10  # the scrapes went stale: the gate's counts
    assert reader.load(deployment) == Load("gateway", 0.0, 0.0, 64.0)
    assert LoadReader(board, None, EngineMaxima()).load(deployment) == Load("none")
    assert reader.load(None) == Load("none")


class Counting:
    """A pipeline that answers each line after a short wait, counting what runs at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.teams: list[str | None] = []

    async def run(self, snapshot: Snapshot, facts: RequestFacts, sink: CollectingSink) -> None:
        assert facts.key is not None
        self.teams.append(facts.key.team_id)
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.01)
        finally:
            self.now -= 1
        await sink.complete(facts, 200, b"application/json", b'{"ok": true}')


class Congested:
    """Every deployment is queueing: each window stays at its floor."""

    def scraped_at(self, deployment: Deployment) -> float | None:
        return None

    def load(self, deployment: Deployment | None) -> Load:
        return Load("gateway", 100.0, 5.0, 100.0)


async def test_the_running_executor_keeps_lines_within_the_window_and_alternates_teams(
        world: World) -> None:
    pipeline = Counting()
    executor = world.executor
    executor.pipeline = pipeline  # type: ignore[assignment]
    executor.poll_s = 0.01
    executor.concurrency = 8
    executor.dispatcher = Dispatcher(8, window=lambda c: Window(c, floor=1, start=1))
    executor.loads = Congested()  # type: ignore[assignment]
    a = (await world.create(await world.upload(request_lines(6)))).json()["id"]
    b = (await world.create(await world.upload(request_lines(6), "b"), "b")).json()["id"]
    service = asyncio.create_task(executor.run())
    try:
        async with asyncio.timeout(20):
            while {(await world.batch(a))["status"],
                   (await world.batch(b, "b"))["status"]} != {"completed"}:
                await asyncio.sleep(0.02)
    finally:
        service.cancel()
        await asyncio.gather(service, return_exceptions=True)
    assert pipeline.most == 1  # the window (1) held, though 8 could run
    assert sorted(pipeline.teams) == ["team_a"] * 6 + ["team_b"] * 6
    switches = sum(x != y for x, y in zip(pipeline.teams, pipeline.teams[1:], strict=False))
    assert switches >= 8  # the two teams' lines interleave (equal weights), not one batch first
