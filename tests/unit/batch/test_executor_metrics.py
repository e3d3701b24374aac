"""The executor's promotions on ``/metrics``: a batch promoted because its deadline is at risk
is counted by deployment (``inferenceops_batch_promoted_total``) and shown while its lines
are not done (``inferenceops_batch_promoted``), in the process that runs the executor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.support.asgi import request
from tests.unit.batch.batch_world import World, make_world
from tests.unit.conftest import Harness

from inferenceops.batch.dispatch import Item

pytestmark = pytest.mark.usefixtures("backend")
NOW = 1_800_000_000.0


@pytest.fixture
async def world(store_url: str, tmp_path: Path, harness: Harness) -> AsyncIterator[World]:
    w = make_world(store_url, tmp_path, harness)
    yield w
    await w.close()


async def test_a_promotion_is_on_the_metrics_of_the_executors_process(
        world: World, harness: Harness) -> None:
    harness.app.state.metric_sources.append(world.executor.render_metrics)
    dispatch = world.executor.dispatcher
    dispatch.add(Item('chat "pool"', NOW + 60, "team_a", 1.0, None, None, batch="batch_x",
                      left=2))  # type: ignore[arg-type]  # no line behind it: never run
    list(dispatch.take(NOW))
    text = (await request(harness.app, "GET", "/metrics")).body.decode()
    assert 'inferenceops_batch_promoted_total{deployment="chat \\"pool\\""} 1\n' in text
    assert 'inferenceops_batch_promoted{deployment="chat \\"pool\\""} 1\n' in text
    dispatch.done('chat "pool"', batch="batch_x", wall=NOW + 1)
    dispatch.done('chat "pool"', batch="batch_x", wall=NOW + 2)
    text = (await request(harness.app, "GET", "/metrics")).body.decode()
    assert 'inferenceops_batch_promoted_total{deployment="chat \\"pool\\""} 1\n' in text
    assert "inferenceops_batch_promoted{" not in text  # its lines are done
    assert "# TYPE inferenceops_batch_promoted gauge" in text
