"""Every failure a client can meet, as the openai SDK (or raw HTTP) sees it.

Proves each path answers with the right status, the SDK's matching exception
class and an OpenAI-shaped body (``error.message/type/param/code``); upstream
failures mid-stream end the stream promptly; and the server is still healthy
after all of it (the last test in this module).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from multidict import CIMultiDict

from tests.integration._harness import ADMIN_KEY, Gateway
from tests.integration._support import MAX_BODY_BYTES, USER, assert_error_body, sse_data

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _body(exc: openai.APIStatusError) -> dict[str, Any]:
    """The whole response document (the SDK keeps only its ``error`` member as ``.body``)."""
    return assert_error_body(exc.response.content)


async def _post(gateway: Gateway, path: str, *, data: bytes | None = None,
                json: object = None, headers: dict[str, str] | None = None,
                ) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as http, http.post(
            f"{gateway.origin}{path}", data=data, json=json,
            headers=AUTH if headers is None else headers) as resp:
        return resp.status, CIMultiDict(resp.headers), await resp.read()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, bytes]:
    """One request/response on an open HTTP/1.1 connection (Content-Length responses only)."""
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *header_lines = head.decode().split("\r\n")
    headers = CIMultiDict(line.split(": ", 1) for line in header_lines if line)
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return int(status_line.split()[1]), body


def _raw_post(doc: bytes) -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(doc) + doc)


# --- the caller's fault -------------------------------------------------------------------


def test_bad_key_is_authentication_error(gateway: Gateway) -> None:
    with openai.OpenAI(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0) as bad, \
            pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="chat-ok", messages=USER)
    assert info.value.status_code == 401
    error = _body(info.value)
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")


def test_bad_key_on_models_is_authentication_error(gateway: Gateway) -> None:
    with openai.OpenAI(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0) as bad, \
            pytest.raises(openai.AuthenticationError):
        bad.models.list()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic c2s6eA=="},
                                     {"Authorization": "Bearer"}, {"Authorization": ""}],
                         ids=["none", "basic", "empty-bearer", "empty"])
async def test_missing_or_malformed_key_is_401(gateway: Gateway, headers: dict[str, str]) -> None:
    status, _, body = await _post(gateway, "/v1/chat/completions",
                                  json={"model": "chat-ok", "messages": USER}, headers=headers)
    assert status == 401
    assert_error_body(body, type_="authentication_error", code="invalid_api_key")


@pytest.mark.parametrize("call", ["chat", "embeddings", "completions"])
def test_unknown_model_is_not_found(client: openai.OpenAI, call: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        if call == "chat":
            client.chat.completions.create(model="nope", messages=USER)
        elif call == "embeddings":
            client.embeddings.create(model="nope", input="x")
        else:
            client.completions.create(model="nope", prompt="x")
    assert info.value.status_code == 404
    error = _body(info.value)
    assert (error["type"], error["code"], error["param"]) == \
        ("invalid_request_error", "model_not_found", "model")


def test_chat_on_embedding_model_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="embed-ok", messages=USER)
    assert info.value.status_code == 400
    assert _body(info.value)["param"] == "model"


def test_embeddings_on_chat_model_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="chat-ok", input="x")
    assert _body(info.value)["type"] == "invalid_request_error"


def test_empty_messages_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="chat-ok", messages=[])
    assert _body(info.value)["param"] == "messages"


@pytest.mark.parametrize(("path", "doc", "param"), [
    ("/v1/chat/completions", {"model": "chat-ok"}, "messages"),
    ("/v1/completions", {"model": "chat-ok"}, "prompt"),
    ("/v1/embeddings", {"model": "embed-ok"}, "input"),
    ("/v1/chat/completions", {"messages": USER}, "model"),
])
async def test_missing_required_field_is_400(gateway: Gateway, path: str, doc: dict[str, Any],
                                             param: str) -> None:
    status, _, body = await _post(gateway, path, json=doc)
    assert status == 400
    error = assert_error_body(body, type_="invalid_request_error",
                              code="missing_required_parameter")
    assert error["param"] == param


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"],
                         ids=["broken", "empty", "array", "string", "not-utf8"])
async def test_invalid_json_is_400(gateway: Gateway, raw: bytes) -> None:
    status, _, body = await _post(gateway, "/v1/chat/completions", data=raw,
                                  headers={**AUTH, "Content-Type": "application/json"})
    assert status == 400
    assert_error_body(body, type_="invalid_request_error", code="invalid_json")


async def test_oversize_body_with_length_is_413(gateway: Gateway) -> None:
    doc = {"model": "chat-ok", "messages": [{"role": "user", "content": "x" * MAX_BODY_BYTES}]}
    status, _, body = await _post(gateway, "/v1/chat/completions", json=doc)
    assert status == 413
    assert_error_body(body, type_="invalid_request_error", code="payload_too_large")


async def test_oversize_chunked_body_is_413(gateway: Gateway) -> None:
    """No Content-Length: the limit is enforced while the body streams in.

    Raw socket, and the body is left unfinished on purpose: the gateway must
    answer as soon as it has read more than the limit, not wait for the end.
    (A client still writing when the server answers and closes would race.)
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b'{"model": "chat-ok", "messages": [{"role": "user", "content": "'
        piece += b"x" * (MAX_BODY_BYTES // 2)
        for _ in range(3):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        status, body = await _exchange(reader, writer, b"")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    assert status == 413, body
    assert_error_body(body, code="payload_too_large")


async def test_keep_alive_connection_survives_errors(gateway: Gateway) -> None:
    """After a 413 (body never read), 400s and 404s, the same connection still serves."""
    ok = orjson.dumps({"model": "chat-ok", "messages": USER})
    oversize = orjson.dumps({"model": "chat-ok",
                             "messages": [{"role": "user", "content": "x" * MAX_BODY_BYTES}]})
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        for doc, status in [(oversize, 413), (ok, 200), (b"{broken", 400), (ok, 200),
                            (orjson.dumps({"model": "nope", "messages": USER}), 404), (ok, 200)]:
            got, body = await _exchange(reader, writer, _raw_post(doc))
            assert got == status, body
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_declared_oversize_is_refused_before_authentication(gateway: Gateway) -> None:
    status, _, _ = await _post(gateway, "/v1/chat/completions",
                               data=b"x" * (MAX_BODY_BYTES + 1), headers={})
    assert status == 413


def test_oversize_body_through_the_sdk_is_413(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="chat-ok", messages=[{"role": "user", "content": "x" * 2 * MAX_BODY_BYTES}])
    assert info.value.status_code == 413
    assert _body(info.value)["code"] == "payload_too_large"


@pytest.mark.parametrize(("value", "code"), [(0, "invalid_value"), (-5, "invalid_value"),
                                             (10**12, "invalid_value"), ("12", "invalid_type"),
                                             (1.5, "invalid_type"), (True, "invalid_type")])
@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_bad_token_cap_is_bad_request(client: openai.OpenAI, field: str, value: object,
                                      code: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="chat-ok", messages=USER,
                                       extra_body={field: value})
    error = _body(info.value)
    assert (error["code"], error["param"]) == (code, field)


def test_bad_token_cap_on_completions_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="chat-ok", prompt="x", max_tokens=0)
    assert _body(info.value)["param"] == "max_tokens"


@pytest.mark.parametrize(("field", "value"), [("stream", "yes"), ("model", 7),
                                              ("stream_options", "on")])
async def test_wrongly_typed_field_is_400(gateway: Gateway, field: str, value: object) -> None:
    doc = {"model": "chat-ok", "messages": USER, field: value}
    status, _, body = await _post(gateway, "/v1/chat/completions", json=doc)
    assert status == 400
    assert assert_error_body(body, code="invalid_type")["param"] == field


async def test_unknown_url_is_404(gateway: Gateway) -> None:
    for method, path in [("GET", "/v1/nope"), ("POST", "/v2/chat/completions"), ("GET", "/"),
                         ("GET", "/_sim/nothing/metrics")]:
        async with aiohttp.ClientSession() as http, http.request(
                method, f"{gateway.origin}{path}", headers=AUTH) as resp:
            assert resp.status == 404, path
            assert_error_body(await resp.read(), type_="invalid_request_error")


async def test_wrong_method_is_405(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http, http.get(
            f"{gateway.base_url}/chat/completions", headers=AUTH) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        assert_error_body(await resp.read(), code="method_not_allowed")


def test_wrong_method_through_the_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.get("/chat/completions", cast_to=object)
    assert info.value.status_code == 405


# --- the upstream's fault -----------------------------------------------------------------


@pytest.mark.parametrize(("model", "exc_type"), [
    ("error-400", openai.BadRequestError),
    ("error-422", openai.UnprocessableEntityError),
    ("error-429", openai.RateLimitError),
])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_4xx_passes_through(client: openai.OpenAI, model: str,
                                     exc_type: type[openai.APIStatusError], stream: bool) -> None:
    status = int(model.split("-")[1])
    with pytest.raises(exc_type) as info:
        client.chat.completions.create(model=model, messages=USER, stream=stream)
    assert info.value.status_code == status
    error = _body(info.value)
    assert error["message"] == f"upstream says {status}"
    assert info.value.response.headers["content-type"].startswith("application/json")


def test_plain_text_upstream_400_becomes_openai_shaped(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="plain-400", messages=USER)
    error = _body(info.value)
    assert error["message"] == "nope, plain text"
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("upstream_status", [500, 503])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_5xx_is_502_with_upstream_details(client: openai.OpenAI, upstream_status: int,
                                                   stream: bool) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=f"error-{upstream_status}", messages=USER,
                                       stream=stream)
    assert info.value.status_code == 502
    error = _body(info.value)
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_server_error")
    assert error["upstream"] == {"status": upstream_status,
                                 "message": f"upstream says {upstream_status}"}


@pytest.mark.parametrize("stream", [False, True])
def test_every_replica_refusing_is_503_with_retry_after(client: openai.OpenAI,
                                                        stream: bool) -> None:
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="refused", messages=USER, stream=stream)
    assert time.monotonic() - started < 2  # connect_s: 2 — never a hang
    assert info.value.status_code == 503
    assert int(info.value.response.headers["retry-after"]) >= 1
    error = _body(info.value)
    assert (error["type"], error["code"]) == ("service_unavailable", "no_replica_available")
    assert "'refused'" in error["message"]  # names the model
    assert "127.0.0.1" not in error["message"]  # never a replica's address


def test_connect_timeout_uses_connect_s(client: openai.OpenAI) -> None:
    """An engine that never completes the TCP handshake fails fast (connect_s: 0.3)."""
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="blackhole", messages=USER)
    assert time.monotonic() - started < 3
    assert info.value.status_code == 503
    _body(info.value)


def test_connect_timeout_is_reported_as_no_replica_available(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="blackhole", messages=USER)
    error = _body(info.value)
    assert (info.value.status_code, error["code"]) == (503, "no_replica_available"), error
    assert "120" not in error["message"], error


@pytest.mark.parametrize("stream", [False, True])
def test_first_byte_timeout_is_504(client: openai.OpenAI, stream: bool) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="slow-timeout", messages=USER, stream=stream)
    assert time.monotonic() - started < 1.9  # the 0.3 s budget, not the engine's 2 s
    assert info.value.status_code == 504
    error = _body(info.value)
    assert (error["type"], error["code"]) == ("timeout_error", "upstream_timeout")


@pytest.mark.parametrize(("model", "code"), [("stall", "upstream_timeout"),
                                           ("crash", "upstream_unavailable")])
def test_broken_stream_ends_with_error_event(client: openai.OpenAI, model: str, code: str) -> None:
    started = time.monotonic()
    stream = client.chat.completions.create(model=model, messages=USER, stream=True)
    got: list[str | None] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            got.append(chunk.choices[0].delta.content)
    assert time.monotonic() - started < 5
    assert got == ["t0 "]
    assert isinstance(info.value.body, dict)
    assert info.value.body["code"] == code


async def test_stalled_stream_raw_final_event(gateway: Gateway) -> None:
    started = time.monotonic()
    status, headers, raw = await _post(gateway, "/v1/chat/completions",
                                       json={"model": "stall", "messages": USER, "stream": True})
    assert time.monotonic() - started < 5
    assert status == 200
    data = sse_data(raw)
    assert len(data) == 2
    assert orjson.loads(data[0])["choices"][0]["delta"]["content"] == "t0 "
    assert_error_body(orjson.loads(data[1]), type_="timeout_error", code="upstream_timeout")


async def test_total_timeout_cuts_a_long_stream(gateway: Gateway) -> None:
    """``drip-total`` allows 0.7 s in all; its engine drips for ~2 s."""
    started = time.monotonic()
    status, _, raw = await _post(gateway, "/v1/chat/completions",
                                 json={"model": "drip-total", "messages": USER, "stream": True})
    assert time.monotonic() - started < 1.8
    assert status == 200
    data = sse_data(raw)
    assert 1 <= len(data) - 1 < 10
    assert_error_body(orjson.loads(data[-1]), type_="timeout_error", code="upstream_timeout")


async def test_crashed_stream_raw_final_event(gateway: Gateway) -> None:
    status, _, raw = await _post(gateway, "/v1/chat/completions",
                                 json={"model": "crash", "messages": USER, "stream": True})
    assert status == 200
    data = sse_data(raw)
    assert data[-1] != "[DONE]"
    assert_error_body(orjson.loads(data[-1]), type_="upstream_error",
                      code="upstream_unavailable")


# --- and afterwards ---------------------------------------------------------------------------


def test_zz_server_still_serves_after_all_errors(gateway: Gateway, client: openai.OpenAI) -> None:
    assert gateway.proc.poll() is None
    assert gateway.ready()
    reply = client.chat.completions.create(model="chat-ok", messages=USER)
    assert reply.choices[0].message.content == "hello"
    pieces = [c.choices[0].delta.content
              for c in client.chat.completions.create(model="chat-ok", messages=USER,
                                                      stream=True)]
    assert len(pieces) == 5
    assert "Traceback" not in gateway.output()
