"""The happy paths through a real gateway process, driven by the official openai SDK.

Proves: chat (plain and streamed), legacy completions, embeddings and the
models endpoints work with the sync and the async client; aliases reach the
engine as ``served_model``; the engine gets the deployment's own key, never
the caller's, and that key never comes back to the caller.
"""

from __future__ import annotations

import uuid

import aiohttp
import openai
import orjson
import pytest

from tests.integration._harness import ADMIN_KEY, UPSTREAM_KEY, Gateway
from tests.integration._support import MAIN_MODELS, USER, sse_data
from tests.support.fake_upstream import FakeUpstream, Seen

pytestmark = pytest.mark.integration


def _nonce() -> str:
    return f"nonce-{uuid.uuid4().hex}"


def _seen(fake: FakeUpstream, nonce: str) -> list[Seen]:
    return [r for r in fake.requests if nonce.encode() in r.body]


def _header(seen: Seen, name: str) -> str | None:
    return next((v for k, v in seen.headers.items() if k.lower() == name), None)


# --- chat, completions, embeddings -------------------------------------------------------


def test_chat_returns_upstream_content_and_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="chat-ok", messages=USER)
    assert reply.choices[0].message.content == "hello"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens,
            reply.usage.total_tokens) == (3, 1, 4)


async def test_async_chat_returns_upstream_content_and_usage(aclient: openai.AsyncOpenAI) -> None:
    reply = await aclient.chat.completions.create(model="chat-ok", messages=USER)
    assert reply.choices[0].message.content == "hello"
    assert reply.usage is not None and reply.usage.total_tokens == 4


def test_stream_yields_chunks_in_order(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="chat-ok", messages=USER, stream=True)
    pieces = [c.choices[0].delta.content for c in stream if c.choices]
    assert pieces == [f"t{i} " for i in range(5)]


async def test_async_stream_yields_chunks_in_order(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(model="chat-ok", messages=USER, stream=True)
    pieces = [c.choices[0].delta.content async for c in stream if c.choices]
    assert pieces == [f"t{i} " for i in range(5)]


async def test_raw_stream_is_sse_and_ends_with_done(gateway: Gateway) -> None:
    body = {"model": "chat-ok", "messages": USER, "stream": True}
    async with aiohttp.ClientSession() as http, http.post(
            f"{gateway.base_url}/chat/completions", json=body,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = await resp.read()
    data = sse_data(raw)
    assert data[-1] == "[DONE]"
    assert [orjson.loads(d)["choices"][0]["delta"]["content"] for d in data[:-1]] == \
        [f"t{i} " for i in range(5)]


def test_completions_reach_the_completions_endpoint(client: openai.OpenAI,
                                                    fake: FakeUpstream) -> None:
    nonce = _nonce()
    reply = client.completions.create(model="chat-ok", prompt=nonce, max_tokens=5)
    assert reply.id == "chatcmpl-fake"
    assert reply.usage is not None and reply.usage.total_tokens == 4
    (seen,) = _seen(fake, nonce)
    assert seen.path == "/v1/completions"
    assert orjson.loads(seen.body)["prompt"] == nonce


async def test_async_completions(aclient: openai.AsyncOpenAI) -> None:
    reply = await aclient.completions.create(model="gpt-alias", prompt="hi", max_tokens=5)
    assert reply.id == "chatcmpl-fake"


def test_embeddings_return_vectors(client: openai.OpenAI, fake: FakeUpstream) -> None:
    nonce = _nonce()
    reply = client.embeddings.create(model="embed-ok", input=[nonce, "two"],
                                     encoding_format="float")
    assert [d.embedding for d in reply.data] == [[0.5, 0.5], [0.5, 0.5]]
    assert [d.index for d in reply.data] == [0, 1]
    (seen,) = _seen(fake, nonce)
    assert seen.path == "/v1/embeddings"
    assert orjson.loads(seen.body)["model"] == "embed-upstream"


async def test_async_embeddings_return_vectors(aclient: openai.AsyncOpenAI) -> None:
    reply = await aclient.embeddings.create(model="embed-ok", input="one",
                                            encoding_format="float")
    assert reply.data[0].embedding == [0.5, 0.5]


# --- models --------------------------------------------------------------------------------


def test_models_list_shows_configured_models(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert {m.id for m in models} == MAIN_MODELS
    assert all(m.object == "model" for m in models)


async def test_async_models_list(aclient: openai.AsyncOpenAI) -> None:
    page = await aclient.models.list()
    assert {m.id async for m in page} == MAIN_MODELS


@pytest.mark.parametrize("name", ["chat-ok", "gpt-alias", "team/alias"])
def test_models_retrieve_by_name_or_alias(client: openai.OpenAI, name: str) -> None:
    card = client.models.retrieve(name)
    assert card.id == "chat-ok"
    assert card.object == "model"


async def test_async_models_retrieve(aclient: openai.AsyncOpenAI) -> None:
    card = await aclient.models.retrieve("gpt-alias")
    assert card.id == "chat-ok"


def test_models_retrieve_unknown_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"


async def test_async_models_retrieve_unknown_is_not_found(aclient: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await aclient.models.retrieve("no-such-model")


# --- alias rewrite and credentials -----------------------------------------------------------


@pytest.mark.parametrize("name", ["chat-ok", "gpt-alias", "team/alias"])
def test_public_name_reaches_upstream_as_served_model(client: openai.OpenAI, fake: FakeUpstream,
                                                      name: str) -> None:
    nonce = _nonce()
    client.chat.completions.create(model=name, messages=[{"role": "user", "content": nonce}])
    (seen,) = _seen(fake, nonce)
    assert seen.path == "/v1/chat/completions"
    doc = orjson.loads(seen.body)
    assert doc["model"] == "ok"
    assert doc["messages"] == [{"role": "user", "content": nonce}]


def test_streamed_alias_reaches_upstream_as_served_model(client: openai.OpenAI,
                                                         fake: FakeUpstream) -> None:
    nonce = _nonce()
    stream = client.chat.completions.create(
        model="gpt-alias", messages=[{"role": "user", "content": nonce}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    assert len(chunks) == 6  # 5 content chunks, then the usage the client asked for
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    (seen,) = _seen(fake, nonce)
    doc = orjson.loads(seen.body)
    assert doc["model"] == "ok"
    assert doc["stream"] is True
    assert doc["stream_options"] == {"include_usage": True}


async def test_unknown_fields_and_bytes_pass_through(gateway: Gateway, fake: FakeUpstream) -> None:
    """When no rewrite is needed the engine gets the caller's bytes exactly."""
    nonce = _nonce()
    raw = orjson.dumps({"model": "error-400", "messages": USER, "x_vendor": {"k": [1, 2]},
                        "seed": 7, "nonce": nonce})
    async with aiohttp.ClientSession() as http, http.post(
            f"{gateway.base_url}/chat/completions", data=raw,
            headers={"Authorization": f"Bearer {ADMIN_KEY}",
                     "Content-Type": "application/json"}) as resp:
        assert resp.status == 400
    (seen,) = _seen(fake, nonce)
    assert seen.body == raw


def test_upstream_gets_its_own_key_not_the_callers(client: openai.OpenAI,
                                                   fake: FakeUpstream) -> None:
    nonce = _nonce()
    client.chat.completions.create(model="gpt-alias", messages=[{"role": "user", "content": nonce}],
                                   extra_headers={"x-custom-secret": "abc"})
    (seen,) = _seen(fake, nonce)
    assert _header(seen, "authorization") == f"Bearer {UPSTREAM_KEY}"
    assert all(ADMIN_KEY not in v for v in seen.headers.values()), seen.headers


async def test_upstream_key_never_reaches_the_caller(gateway: Gateway) -> None:
    """Successes, streams and every kind of upstream failure: the key is not in the answer."""
    cases = [("chat-ok", False), ("chat-ok", True), ("error-400", False), ("plain-400", False),
             ("error-500", False), ("refused", False), ("slow-timeout", False),
             ("stall", True), ("crash", True)]
    async with aiohttp.ClientSession() as http:
        for model, stream in cases:
            body = {"model": model, "messages": USER, "stream": stream}
            async with http.post(f"{gateway.base_url}/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as resp:
                try:
                    payload = await resp.read()
                except aiohttp.ClientPayloadError:
                    payload = b""  # a broken stream still must not have leaked it
                headers = "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
            assert UPSTREAM_KEY not in headers, (model, headers)
            assert UPSTREAM_KEY.encode() not in payload, (model, payload)
            assert UPSTREAM_KEY[-8:].encode() not in payload, (model, payload)
