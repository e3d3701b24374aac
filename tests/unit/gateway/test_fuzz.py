"""Property tests: whatever a client sends, the answer is a 2xx or an OpenAI-shaped 4xx.

Runs the real gateway application in-process against the fake engine, with
bodies hypothesis builds: random bytes, invalid UTF-8, JSON of any shape,
chat requests with wrong types and absurd token caps, oversize bodies.
"""

from __future__ import annotations

import asyncio
import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.asgi import request
from tests.unit.conftest import AUTH, Harness


def _dumps(value: object) -> bytes:
    # stdlib json: it writes integers of any size, which orjson refuses to
    return json.dumps(value).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12,
)
field_values = json_values | st.integers(-(10**30), 10**30)

chat_like = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["chat-model", "gpt-alias", "embed-model", "nope", ""]) | field_values,
        "messages": st.just([{"role": "user", "content": "hi"}]) | field_values,
        "stream": st.booleans() | field_values,
        "max_tokens": st.integers(-(10**15), 10**15) | field_values,
        "max_completion_tokens": st.integers(-5, 5) | field_values,
        "stream_options": st.just({"include_usage": True}) | field_values,
    },
)

bodies = (
    st.binary(max_size=300)
    | st.builds(_dumps, json_values)
    | st.builds(_dumps, chat_like)
    | st.builds(lambda b: orjson.dumps({"model": "chat-model", "messages": [{"c": "x"}]})[:-1] + b,
                st.binary(min_size=1, max_size=8))
)

PATHS = st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])


def check(resp) -> None:  # type: ignore[no-untyped-def]
    assert resp.status < 500 or resp.status in (502, 504), (resp.status, resp.body)
    if resp.status >= 400:
        error = orjson.loads(resp.body)["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str)
        assert "code" in error
    assert "x-request-id" in resp.headers


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, path=PATHS)
def test_any_body_gets_a_clean_answer(harness: Harness, body: bytes, path: str) -> None:
    loop = asyncio.get_event_loop()
    resp = loop.run_until_complete(request(harness.app, "POST", path, body=body, headers=AUTH))
    check(resp)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(64 * 1024 + 1, 300 * 1024), split=st.integers(1, 7))
def test_oversize_bodies_are_413_however_they_arrive(harness: Harness, size: int,
                                                      split: int) -> None:
    body = b"a" * size
    step = -(-size // split)
    parts = [body[i:i + step] for i in range(0, size, step)]
    loop = asyncio.get_event_loop()
    resp = loop.run_until_complete(request(harness.app, "POST", "/v1/chat/completions",
                                           body_parts=parts, headers=AUTH))
    assert resp.status == 413
    check(resp)
