"""The engine client follows catalog changes without dropping warm pools it can keep."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.support import fake_upstream
from tests.support.fake_upstream import FakeUpstream

from inferenceops.engines.openai_compat import OpenAICompatClient
from inferenceops.errors import UpstreamConnectFailed
from inferenceops.platform import Deployment, Replica

BODY = b'{"model": "ok", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture
async def two_engines() -> AsyncIterator[tuple[FakeUpstream, str, FakeUpstream, str]]:
    first, second = FakeUpstream(), FakeUpstream()
    runner_a, port_a = await fake_upstream.start(first)
    runner_b, port_b = await fake_upstream.start(second)
    yield first, f"http://127.0.0.1:{port_a}/v1", second, f"http://127.0.0.1:{port_b}/v1"
    await runner_a.cleanup()
    await runner_b.cleanup()


def deployment(url: str, api_key: str | None = None, name: str = "d") -> Deployment:
    return Deployment(name, "openai", "ok", (Replica(f"{name}-0", url),), api_key=api_key)


async def test_sync_keeps_unchanged_pools_and_replaces_moved_ones(two_engines) -> None:  # type: ignore[no-untyped-def]
    first, url_a, second, url_b = two_engines
    before = deployment(url_a)
    client = OpenAICompatClient([before])
    await client.start()
    try:
        status, _, _ = await client.complete(before, before.replicas[0], "chat/completions", BODY)
        assert status == 200 and len(first.requests) == 1
        pool = client._pools["d-0"]
        client.sync([deployment(url_a, api_key="sk-new")])
        assert client._pools["d-0"] is pool  # same address: the warm pool stays
        await client.complete(before, before.replicas[0], "chat/completions", BODY)
        assert first.requests[-1].headers["Authorization"] == "Bearer sk-new"
        moved = deployment(url_b)
        client.sync([moved])
        assert client._pools["d-0"] is not pool
        await client.complete(moved, moved.replicas[0], "chat/completions", BODY)
        assert len(second.requests) == 1
    finally:
        await client.close()


async def test_a_request_for_a_removed_replica_fails_as_never_sent(two_engines) -> None:  # type: ignore[no-untyped-def]
    _, url_a, _, _ = two_engines
    old = deployment(url_a)
    client = OpenAICompatClient([old])
    await client.start()
    try:
        client.sync([])
        with pytest.raises(UpstreamConnectFailed, match="removed"):
            await client.complete(old, old.replicas[0], "chat/completions", BODY)
    finally:
        await client.close()
