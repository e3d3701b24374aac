"""Several worker processes behind one port (``--workers 2``).

Proves every worker serves correctly: concurrent chat, streams and
simulator-backed requests all succeed, and the generated bootstrap key (no
``INFERENCEOPS_ADMIN_KEY``) is the same in every worker.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import openai
import pytest

from tests.integration._harness import FakeUpstreams, SpawnGateway, platform_yaml
from tests.support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

USER = [{"role": "user", "content": "hi"}]


async def test_two_workers_serve_correctly(spawn_gateway: SpawnGateway,
                                           upstreams: FakeUpstreams, tmp_path: Path) -> None:
    fake = FakeUpstream()
    config = platform_yaml(
        [{"name": "up", "engine": "openai", "served_model": "ok",
          "replicas": [{"url": upstreams.serve(fake)}]},
         {"name": "sim", "engine": "simulator", "profile": "test-fast", "replicas": 1,
          "served_model": "sim-model"}],
        [{"name": "chat", "deployment": "up"}, {"name": "sim", "deployment": "sim"}])
    gw = spawn_gateway(config=config, admin_key=None, data_dir=tmp_path / "data",
                       args=("--workers", "2"), name="workers")
    match = re.search(r"admin key: (sk-io-\S+)", gw.output())
    assert match, gw.output()

    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key=match.group(1), max_retries=0,
                                  timeout=30) as sdk:
        async def one(i: int) -> str:
            model = "sim" if i % 3 == 2 else "chat"
            if i % 3 == 1:
                stream = await sdk.chat.completions.create(model=model, messages=USER,
                                                           stream=True)
                text = "".join([c.choices[0].delta.content or "" async for c in stream])
                assert text == "t0 t1 t2 t3 t4 "
                return text
            reply = await sdk.chat.completions.create(model=model, messages=USER, max_tokens=4)
            content = reply.choices[0].message.content
            assert content
            return content

        results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(60))), 60)
    assert len(results) == 60
    assert sum(1 for r in fake.requests if r.path == "/v1/chat/completions") == 40
    # granian logs "Started worker-N" once per worker (and, over RSGI, "… runtime-1" too)
    assert len(re.findall(r"Started worker-\d+$", gw.output(), re.MULTILINE)) == 2
