"""The simulator's OpenAI/vLLM-compatible surface, driven through the real ASGI app."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import orjson
import pytest

from inferenceops.engines.simulator.text import count_tokens

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def _chat_body(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "sim-model", "messages": [{"role": "user", "content": content}], **extra}


def _assert_openai_error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, resp.body
    err = resp.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert err["code"] == status and err["message"]
    return err


async def test_chat_completion_shape_and_usage_matches_tokenize(make_client) -> None:
    client = await make_client()
    body = _chat_body("Hello there, how are you today?")
    resp = await client.post(CHAT, body)
    assert resp.status == 200
    assert resp.headers["x-simulator"] == "inferenceops"
    data = resp.json()
    assert data["object"] == "chat.completion" and data["model"] == "sim-model"
    assert data["id"].startswith("chatcmpl-") and isinstance(data["created"], int)
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    usage = data["usage"]
    tok = await client.post("/tokenize", {"model": "sim-model", "messages": body["messages"]})
    assert usage["prompt_tokens"] == tok.json()["count"] == len(tok.json()["tokens"])
    assert usage["completion_tokens"] == count_tokens(choice["message"]["content"])
    assert 24 <= usage["completion_tokens"] <= 40  # test-fast's natural length range
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_completions_usage_matches_tokenize(make_client) -> None:
    client = await make_client()
    prompt = "The quick brown fox, it jumps! Over 3 lazy dogs."
    resp = await client.post(COMPLETIONS, {"model": "sim-model", "prompt": prompt})
    data = resp.json()
    assert data["object"] == "text_completion" and data["id"].startswith("cmpl-")
    tok = (await client.post("/tokenize", {"model": "sim-model", "prompt": prompt})).json()
    assert data["usage"]["prompt_tokens"] == tok["count"] == 13
    assert tok["max_model_len"] == 2048
    assert data["usage"]["completion_tokens"] == count_tokens(data["choices"][0]["text"])


async def test_same_seed_same_text_different_seed_different_text(make_client) -> None:
    a = await make_client(seed=1)
    b = await make_client(seed=1)
    c = await make_client(seed=2)
    body = _chat_body("Tell me a story about a harbor.")
    texts = [(await x.post(CHAT, body)).json()["choices"][0]["message"]["content"] for x in (a, b, c)]
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]
    again = (await a.post(CHAT, body)).json()["choices"][0]["message"]["content"]
    assert again == texts[0]
    other_prompt = _chat_body("Something else entirely.")
    assert (await a.post(CHAT, other_prompt)).json()["choices"][0]["message"]["content"] != again


async def test_max_tokens_gives_length(make_client) -> None:
    client = await make_client()
    for key in ("max_tokens", "max_completion_tokens"):
        data = (await client.post(CHAT, _chat_body("hi", **{key: 5}))).json()
        assert data["choices"][0]["finish_reason"] == "length"
        assert data["usage"]["completion_tokens"] == 5
    data = (await client.post(COMPLETIONS, {"prompt": "hi", "max_tokens": 50, "ignore_eos": True})).json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 50


async def test_streaming_chat_ends_with_usage_and_done(make_client) -> None:
    client = await make_client()
    stream = client.stream(
        CHAT,
        _chat_body("stream please", max_tokens=12, stream=True, stream_options={"include_usage": True}),
    )
    events = [e async for e in stream.events()]
    assert stream.status == 200
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 12
    content = [c for c in chunks[1:-1]]
    text = "".join(c["choices"][0]["delta"]["content"] for c in content)
    assert count_tokens(text) == 12
    assert content[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in content[:-1])
    assert len({c["id"] for c in chunks}) == 1
    # Same text as the non-streaming answer for the same prompt and seed.
    plain = (await client.post(CHAT, _chat_body("stream please", max_tokens=12))).json()
    assert plain["choices"][0]["message"]["content"] == text


async def test_streaming_completions_without_usage(make_client) -> None:
    client = await make_client()
    stream = client.stream(COMPLETIONS, {"prompt": "abc", "max_tokens": 4, "stream": True})
    events = [e async for e in stream.events()]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert count_tokens("".join(c["choices"][0]["text"] for c in chunks)) == 4


@pytest.mark.parametrize(
    ("path", "content", "status"),
    [
        (CHAT, b"{not json", 400),
        (CHAT, b"[1, 2]", 400),
        (CHAT, orjson.dumps({"model": "sim-model"}), 400),
        (CHAT, orjson.dumps({"messages": "hello"}), 400),
        (CHAT, orjson.dumps({"messages": [{"content": "no role"}]}), 400),
        (CHAT, orjson.dumps(_chat_body("x", max_tokens=0)), 400),
        (CHAT, orjson.dumps(_chat_body("x", max_tokens="ten")), 400),
        (CHAT, orjson.dumps(_chat_body("x", stream="yes")), 400),
        (COMPLETIONS, orjson.dumps({"prompt": ""}), 400),
        (COMPLETIONS, orjson.dumps({"prompt": ["a", "b"]}), 400),
        (COMPLETIONS, orjson.dumps({"prompt": {"x": 1}}), 400),
        (CHAT, orjson.dumps(_chat_body("x", model="nope")), 404),
        ("/v1/embeddings", orjson.dumps({"input": "x"}), 400),
        ("/v1/load_lora_adapter", orjson.dumps({"lora_name": "a"}), 400),
        ("/v1/unload_lora_adapter", orjson.dumps({"lora_name": "ghost"}), 404),
        ("/nowhere", b"{}", 404),
    ],
)
async def test_bad_input_is_openai_shaped_4xx(make_client, path, content, status) -> None:
    client = await make_client()
    _assert_openai_error(await client.post(path, content=content), status)


async def test_unknown_model_message_and_type(make_client) -> None:
    client = await make_client()
    err = _assert_openai_error(await client.post(CHAT, _chat_body("x", model="gpt-9")), 404)
    assert err["type"] == "NotFoundError" and "gpt-9" in err["message"]


async def test_too_many_tokens_is_400(make_client, words) -> None:
    client = await make_client()
    err = _assert_openai_error(
        await client.post(COMPLETIONS, {"prompt": words(100), "max_tokens": 2000}), 400
    )
    assert "maximum context length is 2048" in err["message"]
    _assert_openai_error(await client.post(COMPLETIONS, {"prompt": words(2048)}), 400)
    # Without max_tokens the default fills what is left of the context.
    ok = await client.post(COMPLETIONS, {"prompt": words(2040), "ignore_eos": True})
    assert ok.json()["usage"]["completion_tokens"] == 8


async def test_wrong_method_is_405(make_client) -> None:
    client = await make_client()
    resp = await client.get(CHAT)
    err = _assert_openai_error(resp, 405)
    assert err["type"] == "MethodNotAllowed" and resp.headers["allow"] == "POST"
    _assert_openai_error(await client.post("/v1/models"), 405)


async def test_models_health_version_and_metrics(make_client) -> None:
    client = await make_client()
    models = (await client.get("/v1/models")).json()
    assert models["object"] == "list"
    (card,) = models["data"]
    assert card["id"] == "sim-model" and card["owned_by"] == "inferenceops-simulator"
    assert card["parent"] is None and card["max_model_len"] == 2048
    health = await client.get("/health")
    assert health.status == 200 and health.body == b""
    assert "simulator" in (await client.get("/version")).json()["version"]
    await client.post(CHAT, _chat_body("count me", max_tokens=3))
    text = await client.metrics_text()
    for series in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:request_success_total",
    ):
        assert f'{series}{{model_name="sim-model"' in text
        assert f"# TYPE {series} " in text
    lora_info = 'running_lora_adapters="",waiting_lora_adapters="",max_lora="2"'
    assert f"vllm:lora_requests_info{{{lora_info}}}" in text
    values = await client.metrics()
    assert values["vllm:generation_tokens_total"] == 3
    assert values["vllm:request_success_total"] == 1
    assert values["vllm:num_requests_running"] == 0 and values["vllm:kv_cache_usage_perc"] == 0


async def test_lifespan_and_unknown_scope(make_client) -> None:
    client = await make_client()
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await client.app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    await client.app({"type": "websocket", "path": "/"}, receive, send)  # ignored, no error
    assert len(sent) == 2


async def test_routes_by_path_only(make_client) -> None:
    client = await make_client()
    # A root_path (as set by a mounting server) must not change routing.
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/health",
        "root_path": "/engines/x",
        "headers": [],
        "query_string": b"",
    }
    await client.app(scope, receive, send)
    assert sent[0]["status"] == 200


# ---- embeddings ------------------------------------------------------------


async def test_embeddings_unit_norm_deterministic_and_base64(make_client) -> None:
    client = await make_client("test-embed", model="sim-embed", seed=7)
    resp = await client.post(
        "/v1/embeddings", {"model": "sim-embed", "input": ["hello world", "other text here"]}
    )
    data = resp.json()
    assert resp.status == 200 and data["object"] == "list"
    vectors = [d["embedding"] for d in data["data"]]
    assert [d["index"] for d in data["data"]] == [0, 1]
    assert all(len(v) == 16 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-9) for v in vectors)
    assert vectors[0] != vectors[1]
    assert data["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    single = (await client.post("/v1/embeddings", {"input": "hello world"})).json()
    assert single["data"][0]["embedding"] == vectors[0]
    b64 = (await client.post("/v1/embeddings", {"input": "hello world", "encoding_format": "base64"})).json()
    raw = base64.b64decode(b64["data"][0]["embedding"])
    decoded = struct.unpack("<16f", raw)
    assert all(
        math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for a, b in zip(decoded, vectors[0], strict=True)
    )
    other_seed = await make_client("test-embed", model="sim-embed", seed=8)
    moved = (await other_seed.post("/v1/embeddings", {"input": "hello world"})).json()
    assert moved["data"][0]["embedding"] != vectors[0]
    ids = (await client.post("/v1/embeddings", {"input": [[1, 2, 3], [4, 5]]})).json()
    assert ids["usage"]["prompt_tokens"] == 5


async def test_embed_profile_rejects_generation_and_bad_inputs(make_client) -> None:
    client = await make_client("test-embed", model="sim-embed")
    err = _assert_openai_error(await client.post(CHAT, _chat_body("x", model="sim-embed")), 400)
    assert "Chat Completions" in err["message"]
    _assert_openai_error(await client.post(COMPLETIONS, {"prompt": "x"}), 400)
    for bad in (
        {"input": []},
        {"input": ""},
        {"input": 5},
        {"input": "x", "dimensions": 3},
        {"input": "x", "encoding_format": "hex"},
        {"input": " ".join(["w"] * 300)},
    ):
        _assert_openai_error(await client.post("/v1/embeddings", bad), 400)


async def test_generate_profile_rejects_embeddings(make_client) -> None:
    client = await make_client()
    err = _assert_openai_error(await client.post("/v1/embeddings", {"input": "x"}), 400)
    assert "Embeddings" in err["message"]
