"""The gateway in front of its in-process simulated engines (``engine: simulator``).

Proves chat, completions, streaming with a final usage chunk, and embeddings
work end to end through the SDK against the ``test-fast`` / ``test-embed``
profiles, and that both replicas of a two-replica deployment get traffic
(read from each replica's vLLM-style ``/_sim/<deployment>-<i>/metrics``).
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator

import openai
import pytest

from tests.integration._harness import ADMIN_KEY, Gateway, platform_yaml

pytestmark = pytest.mark.integration

USER = [{"role": "user", "content": "Tell me about the simulated engine."}]


@pytest.fixture(scope="module")
def sim_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = platform_yaml(
        [{"name": "sim-chat", "engine": "simulator", "profile": "test-fast", "replicas": 2,
          "served_model": "sim-llama"},
         {"name": "sim-embed", "engine": "simulator", "profile": "test-embed", "replicas": 1,
          "served_model": "sim-minilm"}],
        [{"name": "fast-chat", "deployment": "sim-chat", "aliases": ["fast"]},
         {"name": "fast-embed", "deployment": "sim-embed", "type": "embedding"}])
    gw = Gateway(tmp_path_factory.mktemp("sim"), config=config, name="sim")
    try:
        yield gw.wait_ready()
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def sim(sim_gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim_gateway.base_url, api_key=ADMIN_KEY, max_retries=0,
                       timeout=30) as sdk:
        yield sdk


def _prompt_tokens(gateway: Gateway, replica: str) -> float:
    with urllib.request.urlopen(f"{gateway.origin}/_sim/{replica}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(r"^vllm:prompt_tokens_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def test_chat(sim: openai.OpenAI) -> None:
    reply = sim.chat.completions.create(model="fast-chat", messages=USER)
    assert isinstance(reply.choices[0].message.content, str) and reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_max_tokens_caps_the_answer(sim: openai.OpenAI) -> None:
    reply = sim.chat.completions.create(model="fast", messages=USER, max_tokens=3)
    assert reply.usage is not None and reply.usage.completion_tokens <= 3
    assert reply.choices[0].finish_reason == "length"


def test_completions(sim: openai.OpenAI) -> None:
    reply = sim.completions.create(model="fast-chat", prompt="Once upon a time", max_tokens=8)
    assert reply.choices[0].text
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8


def test_stream_ends_with_a_usage_chunk(sim: openai.OpenAI) -> None:
    chunks = list(sim.chat.completions.create(model="fast-chat", messages=USER, stream=True,
                                              stream_options={"include_usage": True}))
    *content, last = chunks
    assert content and all(c.choices for c in content)
    assert "".join(c.choices[0].delta.content or "" for c in content)
    assert content[-1].choices[0].finish_reason in ("stop", "length")
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens > 0 and last.usage.prompt_tokens > 0


async def test_async_stream_ends_with_a_usage_chunk(sim_gateway: Gateway) -> None:
    async with openai.AsyncOpenAI(base_url=sim_gateway.base_url, api_key=ADMIN_KEY,
                                  max_retries=0, timeout=30) as sdk:
        stream = await sdk.chat.completions.create(model="fast", messages=USER, stream=True,
                                                   max_tokens=5,
                                                   stream_options={"include_usage": True})
        chunks = [c async for c in stream]
    assert chunks[-1].usage is not None
    assert 0 < chunks[-1].usage.completion_tokens <= 5


def test_stream_without_usage_option_has_no_usage(sim: openai.OpenAI) -> None:
    chunks = list(sim.chat.completions.create(model="fast-chat", messages=USER, stream=True))
    assert chunks and all(c.usage is None for c in chunks)


def test_embeddings(sim: openai.OpenAI) -> None:
    reply = sim.embeddings.create(model="fast-embed", input=["alpha", "beta"],
                                  encoding_format="float")
    assert [d.index for d in reply.data] == [0, 1]
    assert all(len(d.embedding) == 16 for d in reply.data)
    assert all(isinstance(x, float) for x in reply.data[0].embedding)
    assert reply.data[0].embedding != reply.data[1].embedding


def test_models_list(sim: openai.OpenAI) -> None:
    assert {m.id for m in sim.models.list()} == {"fast-chat", "fast-embed"}


def test_both_replicas_get_traffic(sim_gateway: Gateway, sim: openai.OpenAI) -> None:
    replicas = ["sim-chat-0", "sim-chat-1"]
    before = {r: _prompt_tokens(sim_gateway, r) for r in replicas}
    for i in range(8):
        sim.chat.completions.create(model="fast-chat", max_tokens=2,
                                    messages=[{"role": "user", "content": f"request {i}"}])
    after = {r: _prompt_tokens(sim_gateway, r) for r in replicas}
    assert all(after[r] > before[r] for r in replicas), (before, after)
