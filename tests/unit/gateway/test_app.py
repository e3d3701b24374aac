"""The data plane end to end in-process: gateway app → real HTTP → fake engine.

Every test runs over both interfaces the app serves: ASGI (uvicorn) and RSGI (granian).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from tests.support.asgi import Response
from tests.support.asgi import request as asgi_request
from tests.support.rsgi import rsgi_request
from tests.unit.conftest import AUTH, Harness, make_harness, platform_yaml

from inferenceops.platform import ApiKey, Identity, Principal, Snapshot

CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "hi"}]}
_SERVED_OVER = {"interface": "asgi"}


@pytest.fixture(autouse=True, params=["asgi", "rsgi"])
def interface(request: pytest.FixtureRequest) -> str:
    _SERVED_OVER["interface"] = request.param
    return str(request.param)


async def request(app: Any, method: str, path: str, **options: Any) -> Response:
    """One request over the interface this test runs on."""
    if _SERVED_OVER["interface"] == "rsgi":
        options.pop("futures", None)  # an ASGI server's detail
        return await rsgi_request(app, method, path, **options)
    return await asgi_request(app, method, path, **options)


def _body(doc: dict) -> bytes:
    return orjson.dumps(doc)


async def chat_via(harness: Harness, served_model: str, doc: dict = CHAT):  # type: ignore[no-untyped-def]
    """One chat request through a gateway whose chat deployment serves ``served_model``."""
    yaml = platform_yaml(harness.port).replace("served_model: ok\n    api_key_env",
                                               f"served_model: {served_model}\n    api_key_env")
    h = await make_harness(yaml, harness.fake, harness.port)
    try:
        return await request(h.app, "POST", "/v1/chat/completions", body=_body(doc), headers=AUTH)
    finally:
        await h.app.state.stop()


def assert_openai_error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status == status, resp.body
    error = resp.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert "code" in error and "param" in error
    if code is not None:
        assert error["code"] == code
    assert "x-request-id" in resp.headers
    assert float(resp.headers["x-inferenceops-overhead-ms"]) >= 0
    return error


async def test_chat_completion_is_forwarded_and_answer_passed_through(harness: Harness) -> None:
    resp = await request(harness.app, "POST", "/v1/chat/completions", body=_body(CHAT), headers=AUTH)
    assert resp.status == 200
    assert resp.json()["choices"][0]["message"]["content"] == "hello"
    assert float(resp.headers["x-inferenceops-overhead-ms"]) >= 0
    assert len(resp.headers["x-request-id"]) == 24


async def test_alias_is_rewritten_to_served_model_and_upstream_key_injected(harness: Harness) -> None:
    doc = {**CHAT, "model": "gpt-alias", "temperature": 0.25}
    resp = await request(harness.app, "POST", "/v1/chat/completions", body=_body(doc), headers=AUTH)
    assert resp.status == 200
    seen = harness.fake.requests[-1]
    forwarded = orjson.loads(seen.body)
    assert forwarded["model"] == "ok"
    assert forwarded["temperature"] == 0.25 and forwarded["messages"] == doc["messages"]
    assert seen.headers["Authorization"] == "Bearer sk-upstream-secret"
    assert b"sk-upstream-secret" not in resp.body
    assert "sk-upstream-secret" not in str(resp.headers)


async def test_body_is_forwarded_byte_for_byte_when_model_needs_no_rewrite(harness: Harness) -> None:
    raw = b'{"model": "ok-direct",  "messages": [{"role":"user","content":"x"}], "x": 1.50}'
    yaml = platform_yaml(harness.port).replace("aliases: [gpt-alias]", "aliases: [ok]")
    h = await make_harness(yaml, harness.fake, harness.port)
    try:
        resp = await request(h.app, "POST", "/v1/chat/completions",
                             body=raw.replace(b"ok-direct", b"ok"), headers=AUTH)
        assert resp.status == 200
        assert harness.fake.requests[-1].body == raw.replace(b"ok-direct", b"ok")
    finally:
        await h.app.state.stop()


async def test_client_request_id_is_echoed(harness: Harness) -> None:
    resp = await request(harness.app, "POST", "/v1/chat/completions", body=_body(CHAT),
                         headers={**AUTH, "x-request-id": "trace-123"})
    assert resp.headers["x-request-id"] == "trace-123"


async def test_unprintable_request_id_is_replaced(harness: Harness) -> None:
    resp = await request(harness.app, "GET", "/healthz", headers={"x-request-id": "a b"})
    assert resp.headers["x-request-id"] != "a b"


def framed(body: bytes, framing: str) -> dict[str, Any]:
    """A request's body in one message, or as granian hands it over: marked ``more_body``, then
    an empty last message. With its Content-Length in, the body is whole and that message is
    left unread: a stream's watch for its caller leaving takes it for what it is."""
    if framing == "granian":
        return {"body_parts": [body, b""], "headers": {**AUTH, "content-length": str(len(body))}}
    return {"body": body, "headers": AUTH}


@pytest.mark.parametrize("framing", ["one-message", "granian"])
async def test_stream_is_passed_through_chunk_by_chunk(harness: Harness, framing: str) -> None:
    harness.fake.stream_chunks = 4
    harness.fake.chunk_delay_s = 0.02
    resp = await request(harness.app, "POST", "/v1/chat/completions",
                         **framed(_body({**CHAT, "stream": True}), framing))
    assert resp.status == 200
    assert resp.headers["content-type"] == "text/event-stream"
    events = [e for e in resp.body.split(b"\n\n") if e]
    assert len(events) == 5 and events[-1] == b"data: [DONE]"
    assert len(resp.chunks) >= 4  # each upstream write went out as it came, not buffered


async def test_embeddings_are_forwarded(harness: Harness) -> None:
    resp = await request(harness.app, "POST", "/v1/embeddings",
                         body=_body({"model": "embed-model", "input": ["a", "b"]}), headers=AUTH)
    assert resp.status == 200
    assert len(resp.json()["data"]) == 2


async def test_models_list_and_retrieve(harness: Harness) -> None:
    resp = await request(harness.app, "GET", "/v1/models", headers=AUTH)
    assert [m["id"] for m in resp.json()["data"]] == ["chat-model", "embed-model"]
    one = await request(harness.app, "GET", "/v1/models/gpt-alias", headers=AUTH)
    assert one.json()["id"] == "chat-model"
    missing = await request(harness.app, "GET", "/v1/models/nope", headers=AUTH)
    assert_openai_error(missing, 404, "model_not_found")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}])
async def test_bad_or_missing_key_is_401(harness: Harness, headers: dict) -> None:
    resp = await request(harness.app, "POST", "/v1/chat/completions", body=_body(CHAT),
                         headers=headers)
    assert_openai_error(resp, 401, "invalid_api_key")
    assert harness.fake.requests == []


async def test_unknown_model_is_404(harness: Harness) -> None:
    resp = await request(harness.app, "POST", "/v1/chat/completions",
                         body=_body({**CHAT, "model": "secret-model"}), headers=AUTH)
    assert_openai_error(resp, 404, "model_not_found")


async def test_chat_on_embedding_model_is_400(harness: Harness) -> None:
    resp = await request(harness.app, "POST", "/v1/chat/completions",
                         body=_body({**CHAT, "model": "embed-model"}), headers=AUTH)
    assert_openai_error(resp, 400, "unsupported_endpoint")


async def test_unknown_path_is_404_and_wrong_method_405(harness: Harness) -> None:
    assert_openai_error(await request(harness.app, "GET", "/v2/nothing"), 404, "unknown_url")
    resp = await request(harness.app, "GET", "/v1/chat/completions", headers=AUTH)
    assert_openai_error(resp, 405, "method_not_allowed")
    assert resp.headers["allow"] == "POST"


async def test_body_over_limit_is_413_even_without_content_length(harness: Harness) -> None:
    parts = [b"x" * 40_000, b"x" * 40_000]
    resp = await request(harness.app, "POST", "/v1/chat/completions", body_parts=parts,
                         headers=AUTH)
    assert_openai_error(resp, 413, "payload_too_large")
    declared = await request(harness.app, "POST", "/v1/chat/completions", body=b"{}",
                             headers={**AUTH, "content-length": "999999999"})
    assert_openai_error(declared, 413, "payload_too_large")


async def test_a_content_length_too_long_to_be_a_number_is_400(harness: Harness) -> None:
    resp = await request(harness.app, "POST", "/v1/chat/completions", body=b"{}",
                         headers={**AUTH, "content-length": "9" * 5000})
    assert_openai_error(resp, 400, "invalid_request")


async def test_with_a_server_that_hands_bodies_over_as_futures_a_strangers_is_never_parsed(
        harness: Harness) -> None:
    """granian's ``receive`` gives futures: the body is asked for before the key is checked
    (``early_read``), yet a stranger still gets 401, never a verdict on the body."""
    bad = await request(harness.app, "POST", "/v1/chat/completions", body=b"{not json",
                        headers={"authorization": "Bearer sk-nobody"}, futures=True)
    assert_openai_error(bad, 401)
    good = await request(harness.app, "POST", "/v1/chat/completions", body=_body(CHAT),
                         headers=AUTH, futures=True)
    assert good.status == 200 and orjson.loads(good.body)["object"] == "chat.completion"
    streamed = await request(harness.app, "POST", "/v1/chat/completions",
                             body=_body({**CHAT, "stream": True}), headers=AUTH, futures=True)
    assert streamed.status == 200 and streamed.body.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("status", [400, 404, 422, 429])
async def test_upstream_4xx_passes_through_with_its_message(harness: Harness, status: int) -> None:
    resp = await chat_via(harness, f"error-{status}")
    error = assert_openai_error(resp, status)
    assert error["message"] == f"upstream says {status}"
    assert error["type"] == "BadRequestError"


@pytest.mark.parametrize("status", [500, 503])
async def test_upstream_5xx_is_502_keeping_the_upstream_message(harness: Harness,
                                                              status: int) -> None:
    resp = await chat_via(harness, f"error-{status}")
    error = assert_openai_error(resp, 502, "upstream_server_error")
    assert error["upstream"] == {"status": status, "message": f"upstream says {status}"}


async def test_plain_text_upstream_400_becomes_openai_shaped(harness: Harness) -> None:
    resp = await chat_via(harness, "plain-400")
    error = assert_openai_error(resp, 400, "upstream_rejected")
    assert "nope" in error["message"]


async def test_refused_connection_is_503_and_another_replica_is_tried(harness: Harness) -> None:
    dead = f"""
  - name: dead
    engine: openai
    served_model: ok
    replicas:
      - url: http://127.0.0.1:9/v1
  - name: half
    engine: openai
    served_model: ok
    replicas:
      - url: http://127.0.0.1:9/v1
      - url: http://127.0.0.1:{harness.port}/v1
"""
    yaml = platform_yaml(harness.port, dead) + """
  - name: dead-model
    deployment: dead
  - name: half-model
    deployment: half
"""
    h = await make_harness(yaml, harness.fake, harness.port)
    try:
        resp = await request(h.app, "POST", "/v1/chat/completions",
                             body=_body({**CHAT, "model": "dead-model"}), headers=AUTH)
        error = assert_openai_error(resp, 503, "no_replica_available")
        assert "'dead-model'" in error["message"]
        assert int(resp.headers["retry-after"]) >= 1
        for _ in range(6):
            ok = await request(h.app, "POST", "/v1/chat/completions",
                               body=_body({**CHAT, "model": "half-model"}), headers=AUTH)
            assert ok.status == 200
    finally:
        await h.app.state.stop()


async def test_slow_upstream_is_504(harness: Harness) -> None:
    resp = await chat_via(harness, "slow-3000")
    assert_openai_error(resp, 504, "upstream_timeout")


async def test_stalled_stream_ends_with_an_error_event(harness: Harness) -> None:
    resp = await chat_via(harness, "stall", {**CHAT, "stream": True})
    assert resp.status == 200
    last = resp.body.strip().split(b"\n\n")[-1]
    assert last.startswith(b"data: ")
    assert orjson.loads(last[6:])["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize("framing", ["one-message", "granian"])
async def test_client_disconnect_mid_stream_closes_the_upstream(harness: Harness,
                                                               framing: str) -> None:
    harness.fake.stream_chunks = 1000
    harness.fake.chunk_delay_s = 0.01
    resp = await request(harness.app, "POST", "/v1/chat/completions", disconnect_after=3,
                         **framed(_body({**CHAT, "stream": True}), framing))
    assert resp.status == 200
    for _ in range(200):
        if harness.fake.active_streams == 0:
            break
        await asyncio.sleep(0.01)
    assert harness.fake.active_streams == 0


async def test_simulator_mount_is_not_reachable_from_other_hosts(harness: Harness) -> None:
    resp = await request(harness.app, "GET", "/_sim/anything/v1/models", client="10.1.2.3")
    assert_openai_error(resp, 404, "unknown_url")


async def test_health_and_readiness(harness: Harness) -> None:
    assert (await request(harness.app, "GET", "/healthz")).status == 200
    assert (await request(harness.app, "GET", "/readyz")).status == 200
    await harness.app.state.stop()
    assert_openai_error = (await request(harness.app, "GET", "/readyz"))
    assert assert_openai_error.status == 503


async def test_server_keeps_serving_after_errors(harness: Harness) -> None:
    for body in (b"{", b"[]", b'{"model": 5}', b"\xff\xfe"):
        resp = await request(harness.app, "POST", "/v1/chat/completions", body=body, headers=AUTH)
        assert 400 <= resp.status < 500
    ok = await request(harness.app, "POST", "/v1/chat/completions", body=_body(CHAT), headers=AUTH)
    assert ok.status == 200


async def test_strangers_are_refused_before_their_body_is_read(harness: Harness) -> None:
    parts = [b"{" * 40_000, b"x" * 40_000]  # oversize and malformed: auth still answers first
    resp = await request(harness.app, "POST", "/v1/chat/completions", body_parts=parts)
    assert_openai_error(resp, 401, "invalid_api_key")


async def test_metrics_are_served_to_this_machine_and_admin_keys_only(harness: Harness) -> None:
    local = await request(harness.app, "GET", "/metrics")
    assert local.status == 200 and b"inferenceops_admission_admitted_total" in local.body
    assert local.headers["content-type"].startswith("text/plain")
    stranger = await request(harness.app, "GET", "/metrics", client="10.1.2.3")
    assert_openai_error(stranger, 404, "unknown_url")  # deployment names are not for everyone
    wrong_key = await request(harness.app, "GET", "/metrics", client="10.1.2.3",
                              headers={"Authorization": "Bearer nope"})
    assert_openai_error(wrong_key, 404, "unknown_url")
    admin = await request(harness.app, "GET", "/metrics", client="10.1.2.3", headers=AUTH)
    assert admin.status == 200


async def test_metrics_are_not_for_a_teams_admin_keys(harness: Harness) -> None:
    """A team's admin-scoped key reads its team, not the platform's deployments."""
    state, hasher = harness.app.state, harness.app.state.hasher
    keys = {"sk-team-admin": ApiKey("key_t", "sk-team", Principal("usr_t"), "team_a",
                                    frozenset({"inference", "admin"})),
            "sk-auditor": ApiKey("key_a", "sk-aud", Principal("usr_a", platform_role="auditor"),
                                 None, frozenset({"admin"}))}
    old = state.snapshot
    state.snapshot = Snapshot(old.catalog, Identity(
        [(hasher.digest(secret), key) for secret, key in keys.items()], {"team_a": ["chat-model"]}),
        old.policy)
    team = await request(harness.app, "GET", "/metrics", client="10.1.2.3",
                         headers={"Authorization": "Bearer sk-team-admin"})
    assert_openai_error(team, 404, "unknown_url")
    auditor = await request(harness.app, "GET", "/metrics", client="10.1.2.3",
                            headers={"Authorization": "Bearer sk-auditor"})
    assert auditor.status == 200
