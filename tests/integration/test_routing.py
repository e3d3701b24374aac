"""Replica choice and connection handling under a real server.

Proves a refused connection is retried on another replica before the first
byte (each request reaches the engine exactly once), a model whose only deployment
refuses every connection is served by its fallback (whole and streamed answers alike),
concurrent callers are all served, and a caller leaving mid-stream frees the engine's
stream.
"""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import openai
import orjson
import pytest

from tests.integration._harness import ADMIN_KEY, Gateway
from tests.integration._support import USER
from tests.support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration


def test_refused_replica_is_retried_on_the_other(client: openai.OpenAI,
                                                 fake: FakeUpstream) -> None:
    nonce = uuid.uuid4().hex
    for i in range(20):
        reply = client.chat.completions.create(
            model="retry-ok", messages=[{"role": "user", "content": f"{nonce}-{i}"}])
        assert reply.choices[0].message.content == "hello"
    reached = [orjson.loads(r.body)["messages"][0]["content"] for r in fake.requests
               if nonce.encode() in r.body]
    assert sorted(reached) == sorted(f"{nonce}-{i}" for i in range(20))  # once each


def test_a_model_whose_deployment_refuses_every_connection_is_served_by_its_fallback(
        client: openai.OpenAI, fake: FakeUpstream) -> None:
    nonce = uuid.uuid4().hex
    whole = client.chat.completions.create(
        model="fallback-ok", messages=[{"role": "user", "content": f"{nonce}-whole"}])
    assert whole.choices[0].message.content == "hello"
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="fallback-ok", messages=[{"role": "user", "content": f"{nonce}-stream"}],
        stream=True) if c.choices)
    assert streamed.startswith("t0 t1")  # the fake engine's stream
    reached = [r for r in fake.requests if nonce.encode() in r.body]
    assert len(reached) == 2  # each once, by the fallback deployment


def test_unreachable_replica_is_retried_on_the_other(client: openai.OpenAI) -> None:
    """One replica never completes the TCP handshake (connect_s: 0.3); the other is fine."""
    failures = []
    for _ in range(6):
        try:
            client.chat.completions.create(model="blackhole-retry", messages=USER)
        except openai.APIStatusError as exc:
            failures.append((exc.status_code, exc.code))
    assert failures == []


async def test_streams_are_retried_too(aclient: openai.AsyncOpenAI) -> None:
    for _ in range(10):
        stream = await aclient.chat.completions.create(model="retry-ok", messages=USER,
                                                       stream=True)
        assert len([c async for c in stream]) == 5


async def test_concurrent_callers_are_all_served(aclient: openai.AsyncOpenAI) -> None:
    async def one(i: int) -> str | None:
        if i % 2:
            stream = await aclient.chat.completions.create(model="gpt-alias", messages=USER,
                                                           stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream])
        reply = await aclient.chat.completions.create(model="retry-ok", messages=USER)
        return reply.choices[0].message.content

    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(60))), 30)
    assert results == ["hello" if i % 2 == 0 else "t0 t1 t2 t3 t4 " for i in range(60)]


async def test_client_leaving_mid_stream_frees_the_engine(gateway: Gateway,
                                                          slow_fake: FakeUpstream) -> None:
    body = {"model": "slow-stream", "messages": USER, "stream": True}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3  # streams cut by earlier tests may still be winding down
    while slow_fake.active_streams and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert slow_fake.active_streams == 0
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway.base_url}/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as resp:
            assert resp.status == 200
            assert (await resp.content.readline()).startswith(b"data: ")
            assert slow_fake.active_streams == 1
            resp.close()  # hang up with eight chunks still to come
        deadline = loop.time() + 1.0  # well before the ~1.8 s the stream would still run
        while slow_fake.active_streams and loop.time() < deadline:
            await asyncio.sleep(0.02)
    assert slow_fake.active_streams == 0
    assert gateway.ready()
