"""The simulator behind a real server (uvicorn in a thread) and a real client (aiohttp)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import aiohttp
import orjson
import pytest
import uvicorn

from inferenceops.engines.simulator import build_simulator_app, load_profile


@pytest.fixture
def server_url() -> Iterator[str]:
    app = build_simulator_app(load_profile("test-fast"), model="served", seed=3)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", ws="none", http="h11", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


async def test_stream_and_disconnect_through_uvicorn(server_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        body = {
            "model": "served",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 8,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with session.post(f"{server_url}/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
            assert resp.headers["x-simulator"] == "inferenceops"
            raw = await resp.read()
        events = [e.removeprefix(b"data: ") for e in raw.split(b"\n\n") if e]
        assert events[-1] == b"[DONE]"
        assert orjson.loads(events[-2])["usage"]["completion_tokens"] == 8

        # Walk away from a long stream: the engine must free the sequence.
        long = {
            "model": "served",
            "prompt": "go",
            "max_tokens": 1500,
            "ignore_eos": True,
            "stream": True,
        }
        resp = await session.post(f"{server_url}/v1/completions", json=long)
        await resp.content.readline()
        resp.close()
        deadline = time.monotonic() + 5
        while True:
            async with session.get(f"{server_url}/metrics") as m:
                text = await m.text()
            if 'vllm:num_requests_running{model_name="served"} 0.0' in text:
                break
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.01)

        async with session.get(f"{server_url}/v1/models") as resp:
            assert (await resp.json())["data"][0]["owned_by"] == "inferenceops-simulator"
