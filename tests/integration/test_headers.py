"""The two headers every gateway response carries, whatever the outcome.

Proves ``x-request-id`` (the caller's, echoed, when it is sane; otherwise a
fresh one) and ``x-inferenceops-overhead-ms`` (a non-negative float that
leaves out time spent waiting on the engine) are on successes, streams and
every kind of error.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import aiohttp
import openai
import pytest
from multidict import CIMultiDict

from tests.integration._harness import ADMIN_KEY, Gateway
from tests.integration._support import MAX_BODY_BYTES, USER, assert_gateway_headers

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": USER, **extra}


# (method, path, headers, json body or raw bytes, expected status)
CASES: list[tuple[str, str, dict[str, str], Any, int]] = [
    ("GET", "/v1/models", AUTH, None, 200),
    ("GET", "/v1/models/gpt-alias", AUTH, None, 200),
    ("GET", "/healthz", {}, None, 200),
    ("GET", "/readyz", {}, None, 200),
    ("POST", "/v1/chat/completions", AUTH, _chat("chat-ok"), 200),
    ("POST", "/v1/chat/completions", AUTH, _chat("chat-ok", stream=True), 200),
    ("POST", "/v1/completions", AUTH, {"model": "chat-ok", "prompt": "x"}, 200),
    ("POST", "/v1/embeddings", AUTH, {"model": "embed-ok", "input": "x"}, 200),
    ("POST", "/v1/chat/completions", AUTH, _chat("stall", stream=True), 200),
    ("POST", "/v1/chat/completions", AUTH, _chat("crash", stream=True), 200),
    ("POST", "/v1/chat/completions", {"Authorization": "Bearer sk-nope"}, _chat("chat-ok"), 401),
    ("POST", "/v1/chat/completions", {}, _chat("chat-ok"), 401),
    ("GET", "/v1/models", {}, None, 401),
    ("POST", "/v1/chat/completions", AUTH, _chat("nope"), 404),
    ("GET", "/v1/models/nope", AUTH, None, 404),
    ("POST", "/v1/chat/completions", AUTH, b"{broken", 400),
    ("POST", "/v1/chat/completions", AUTH, _chat("chat-ok", max_tokens=0), 400),
    ("POST", "/v1/chat/completions", AUTH, b"x" * (MAX_BODY_BYTES + 1), 413),
    ("GET", "/v1/chat/completions", AUTH, None, 405),
    ("GET", "/nowhere", {}, None, 404),
    ("POST", "/v1/chat/completions", AUTH, _chat("error-429"), 429),
    ("POST", "/v1/chat/completions", AUTH, _chat("error-500", stream=True), 502),
    ("POST", "/v1/chat/completions", AUTH, _chat("refused"), 503),
    ("POST", "/v1/chat/completions", AUTH, _chat("slow-timeout", stream=True), 504),
]


async def _call(http: aiohttp.ClientSession, gateway: Gateway, case: tuple[Any, ...],
                request_id: str | None) -> tuple[int, CIMultiDict[str]]:
    method, path, headers, body, _ = case
    headers = dict(headers)
    if request_id is not None:
        headers["x-request-id"] = request_id
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with http.request(method, f"{gateway.origin}{path}", headers=headers, **kwargs) as resp:
        # A broken stream is another test's business; the headers came first.
        with contextlib.suppress(aiohttp.ClientPayloadError):
            await resp.read()
        return resp.status, CIMultiDict(resp.headers)


async def test_every_response_echoes_the_request_id(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        for i, case in enumerate(CASES):
            request_id = f"it-{i}-{case[0]}-{case[-1]}"
            status, headers = await _call(http, gateway, case, request_id)
            assert status == case[-1], (case, status)
            assert_gateway_headers(headers, request_id)


async def test_every_response_gets_a_fresh_request_id(gateway: Gateway) -> None:
    seen: set[str] = set()
    async with aiohttp.ClientSession() as http:
        for case in CASES:
            status, headers = await _call(http, gateway, case, None)
            assert status == case[-1], (case, status)
            assert_gateway_headers(headers)
            seen.add(headers["x-request-id"])
    assert len(seen) == len(CASES)


@pytest.mark.parametrize("bad_id", ["x" * 129, "has space", "ünïcode", "tab\there", ""])
async def test_unusable_request_id_is_replaced(gateway: Gateway, bad_id: str) -> None:
    async with aiohttp.ClientSession() as http:
        status, headers = await _call(http, gateway, CASES[0], bad_id)
    assert status == 200
    assert_gateway_headers(headers)
    assert headers["x-request-id"] != bad_id


def test_sdk_sees_the_headers_on_success_and_stream(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="chat-ok", messages=USER, extra_headers={"x-request-id": "sdk-plain"})
    assert_gateway_headers(raw.headers, "sdk-plain")
    assert raw.parse().choices[0].message.content == "hello"
    with client.chat.completions.with_streaming_response.create(
            model="chat-ok", messages=USER, stream=True,
            extra_headers={"x-request-id": "sdk-stream"}) as streamed:
        assert_gateway_headers(streamed.headers, "sdk-stream")
        assert len(list(streamed.parse())) == 5


def test_sdk_sees_the_headers_on_errors(client: openai.OpenAI) -> None:
    for model, request_id in [("nope", "sdk-404"), ("error-400", "sdk-400"),
                              ("error-503", "sdk-502")]:
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model=model, messages=USER,
                                           extra_headers={"x-request-id": request_id})
        assert_gateway_headers(info.value.response.headers, request_id)


@pytest.mark.parametrize("stream", [False, True])
def test_overhead_leaves_out_engine_time(client: openai.OpenAI, stream: bool) -> None:
    """The engine behind ``slow-ok`` waits 600 ms; the gateway's own share is far less."""
    started = time.monotonic()
    if stream:
        with client.chat.completions.with_streaming_response.create(
                model="slow-ok", messages=USER, stream=True) as raw:
            headers = raw.headers
            list(raw.parse())
    else:
        headers = client.chat.completions.with_raw_response.create(
            model="slow-ok", messages=USER).headers
    assert time.monotonic() - started >= 0.6
    assert 0.0 <= float(headers["x-inferenceops-overhead-ms"]) < 300.0
