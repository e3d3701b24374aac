"""Graceful shutdown under granian (default) and uvicorn.

Proves that on SIGTERM a stream in flight runs to ``[DONE]``, the listening
socket closes at once (new connections refused), and the process exits by
itself soon after; and that a stream outliving ``--shutdown-timeout`` does not
keep the process alive past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import aiohttp
import pytest

from tests.integration._harness import (
    ADMIN_KEY,
    UPSTREAM_KEY_ENV,
    FakeUpstreams,
    SpawnGateway,
    platform_yaml,
)
from tests.support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

SERVERS = ["granian", "uvicorn"]
# uvicorn re-raises the signal it handled once it has shut down cleanly.
CLEAN_EXIT = {0, -signal.SIGTERM}


def _platform(slow_url: str, stall_url: str) -> str:
    return platform_yaml(
        [{"name": "drip", "engine": "openai", "served_model": "ok",
          "replicas": [{"url": slow_url}], "api_key_env": UPSTREAM_KEY_ENV},
         {"name": "stall", "engine": "openai", "served_model": "stall",
          "replicas": [{"url": stall_url}]}],
        [{"name": "drip", "deployment": "drip"}, {"name": "stall", "deployment": "stall"}])


async def _refused(port: int, deadline_s: float) -> bool:
    """Whether new connections to ``port`` get refused within ``deadline_s``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while loop.time() < end:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
        except ConnectionRefusedError:
            return True
        except TimeoutError:
            pass
        else:
            writer.close()
            await writer.wait_closed()
        await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize("server", SERVERS)
async def test_sigterm_lets_the_stream_finish(server: str, spawn_gateway: SpawnGateway,
                                              slow_fake_url: str,
                                              upstreams: FakeUpstreams) -> None:
    shutdown_s = 10
    gw = spawn_gateway(config=_platform(slow_fake_url, upstreams.serve(FakeUpstream())),
                       args=("--server", server, "--shutdown-timeout", str(shutdown_s)),
                       name=f"drain-{server}")
    body = {"model": "drip", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with aiohttp.ClientSession() as http, http.post(
            f"{gw.base_url}/chat/completions", json=body,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as resp:
        assert resp.status == 200
        first = await resp.content.readline()
        assert first.startswith(b"data: ")
        signalled = time.monotonic()
        gw.signal(signal.SIGTERM)
        rest = asyncio.ensure_future(resp.content.read())
        assert await _refused(gw.port, 3), "still accepting connections after SIGTERM"
        assert not rest.done(), "the stream should still be running while we probed"
        tail = await asyncio.wait_for(rest, shutdown_s)
    assert tail.count(b"data: {") == 9  # the other nine chunks
    assert tail.endswith(b"data: [DONE]\n\n")
    code = await asyncio.to_thread(gw.proc.wait, shutdown_s)
    assert time.monotonic() - signalled < shutdown_s
    assert code in CLEAN_EXIT, gw.output()


@pytest.mark.parametrize("server", SERVERS)
async def test_shutdown_timeout_bounds_a_stream_that_never_ends(
        server: str, spawn_gateway: SpawnGateway, slow_fake_url: str,
        upstreams: FakeUpstreams) -> None:
    shutdown_s = 1
    gw = spawn_gateway(config=_platform(slow_fake_url, upstreams.serve(FakeUpstream())),
                       args=("--server", server, "--shutdown-timeout", str(shutdown_s)),
                       name=f"bound-{server}")
    body = {"model": "stall", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with aiohttp.ClientSession() as http, http.post(
            f"{gw.base_url}/chat/completions", json=body,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as resp:
        assert (await resp.content.readline()).startswith(b"data: ")
        signalled = time.monotonic()
        gw.signal(signal.SIGTERM)
        code = await asyncio.to_thread(gw.proc.wait, shutdown_s + 8)
        assert time.monotonic() - signalled < shutdown_s + 8
        # The stream is cut, not left hanging: reading it ends (cleanly or with an error).
        with contextlib.suppress(aiohttp.ClientPayloadError):
            await asyncio.wait_for(resp.content.read(), 5)
    assert code in CLEAN_EXIT, gw.output()
