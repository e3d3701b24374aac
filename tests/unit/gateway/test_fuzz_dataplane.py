"""Property tests of the data plane: no input, however bad, gets a 5xx or a non-OpenAI error.

Two layers:

- ``parse_inference`` alone, over JSON documents built from the documented
  parameter names with values of every type (and deep nesting): it either
  accepts the document — which must then be writable again by orjson, as the
  proxy does when it rewrites the model — or raises ``InvalidRequest``.
  Nothing else.
- The whole in-process application (``GatewayApp``) against the fake engine,
  with arbitrary bodies on each inference route, arbitrary, missing, oversized
  or garbage header values (``Authorization``, ``Content-Type``,
  ``Content-Length``, ``x-request-id``, ``x-inferenceops-priority``), and
  arbitrary methods and paths. Every answer is below 500; every error is
  ``{"error": {"message", "type", "param", "code"}}``; afterwards a normal
  request still succeeds.

Bounded by ``max_examples`` (a few seconds in all); ``deadline=None`` because a
busy shared machine must not turn slowness into failures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from tests.support import fake_upstream
from tests.support.asgi import Response
from tests.support.dataplane_fuzz import ROUTES, bodies, documents, dumps, nested, weighted
from tests.unit.conftest import ADMIN_KEY, Harness, make_harness

from inferenceops.errors import InvalidRequest
from inferenceops.pipeline.request import MAX_JSON_DEPTH, parse_inference
from inferenceops.platform import Endpoint

GOOD_AUTH = f"Bearer {ADMIN_KEY}".encode()
PLATFORM = """
deployments:
  - name: fake
    engine: openai
    served_model: ok
    replicas: [{{url: "http://127.0.0.1:{port}/v1"}}]
    timeouts: {{first_byte_s: 30, between_chunks_s: 30, total_s: 60}}
models:
  - {{name: chat-model, deployment: fake, aliases: [gpt-alias]}}
  - {{name: ok, deployment: fake}}
  - {{name: embed-model, deployment: fake, type: embedding}}
"""


# --- headers, methods, paths ------------------------------------------------------------

def _garbage(max_size: int) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size) | st.text(max_size=max_size).map(
        lambda s: s.encode("utf-8", "surrogatepass"))


optional_header = st.none() | _garbage(40)
#: Each header is mostly absent or right (so requests get far) and otherwise
#: garbage, oversized or subtly wrong. ``<correct>`` is the body's real length.
headers = st.fixed_dictionaries({
    b"authorization": weighted(
        (5, st.just(GOOD_AUTH)), (1, st.none()), (1, _garbage(80)),
        (1, st.builds(lambda b: b"Bearer " + b, _garbage(80))),
        (1, st.integers(513, 20_000).map(lambda n: b"Bearer " + b"k" * n))),
    b"content-type": st.sampled_from([b"application/json", b"text/plain; charset=latin-1"])
    | optional_header,
    b"content-length": weighted(
        (4, st.just(b"<correct>")), (1, optional_header),
        (1, st.sampled_from([b"-1", b"0", b"1e3", b"  12 ", b"1_0", b"0x10", b"\xd9\xa1",
                             b"9" * 5000, b"99999999999999999999999"]))),
    b"x-request-id": optional_header | st.integers(100, 5000).map(lambda n: b"r" * n),
    b"x-inferenceops-priority": weighted(
        (3, st.none()), (1, st.sampled_from([b"interactive", b" BATCH ", b"background"])),
        (1, _garbage(20))),
})
methods = weighted((4, st.just("POST")), (1, st.sampled_from(
    ["GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])), (1, st.text(min_size=1, max_size=12)))
paths = weighted(
    (4, st.sampled_from(list(ROUTES))),
    (1, st.sampled_from(["/v1/models", "/v1/quota", "/metrics", "/healthz", "/readyz", "/",
                         "/v1/", "/admin/api/v1/keys", "/_sim/x/metrics"])),
    (1, st.text(max_size=30).map(lambda s: "/v1/models/" + s)),
    (1, st.text(max_size=40)),
)


# --- driving the application ----------------------------------------------------------------

async def send(app: Any, method: str, path: str, body: bytes,
               raw_headers: dict[bytes, bytes | None]) -> Response:
    """One request with exactly these header bytes (``tests.support.asgi`` only takes text)."""
    header_list = []
    for name, value in raw_headers.items():
        if value == b"<correct>":
            value = b"%d" % len(body)
        if value is not None:
            header_list.append((name, value))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "path": path, "raw_path": path.encode("utf-8", "surrogatepass"),
             "query_string": b"", "headers": header_list, "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8080), "scheme": "http", "root_path": ""}
    response = Response()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the client stays until the answer is complete
        return {"type": "http.disconnect"}

    async def send_(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert response.status == 0, "a second response start"
            response.status = message["status"]
            response.headers = {k.decode(): v.decode("latin-1") for k, v in message["headers"]}
        elif message["type"] == "http.response.body" and message.get("body"):
            response.chunks.append(message["body"])

    await asyncio.wait_for(app(scope, receive, send_), 30)
    return response


def check(response: Response) -> None:
    """The invariant: answered, below 500, and every error in OpenAI's documented shape."""
    assert 200 <= response.status < 500, (response.status, response.body[:500])
    if currently_in_test_context():  # statistics: --hypothesis-show-statistics
        event(f"status {response.status}")
    assert "x-request-id" in response.headers
    if response.status >= 400:
        doc = orjson.loads(response.body)
        assert set(doc) == {"error"}, doc
        error = doc["error"]
        assert {"message", "type", "param", "code"} <= set(error), error
        assert isinstance(error["message"], str) and error["message"], error
        assert isinstance(error["type"], str) and error["type"] != "server_error", error
        assert error["param"] is None or isinstance(error["param"], str), error


def still_serves(harness: Harness) -> None:
    loop = asyncio.get_event_loop()
    for path, doc in [("/v1/chat/completions", {"model": "gpt-alias", "messages": [
                          {"role": "user", "content": "still there?"}], "temperature": 0.5}),
                      ("/v1/embeddings", {"model": "embed-model", "input": "x"})]:
        response = loop.run_until_complete(send(harness.app, "POST", path, orjson.dumps(doc),
                                                {b"authorization": GOOD_AUTH}))
        assert response.status == 200, response.body


@pytest.fixture
async def fuzz_harness() -> AsyncIterator[Harness]:
    """Like the unit harness, but with engine timeouts no busy machine can run into."""
    upstream = fake_upstream.FakeUpstream()
    runner, port = await fake_upstream.start(upstream)
    harness = await make_harness(PLATFORM.format(port=port), upstream, port,
                                 max_body_bytes=64 * 1024)
    yield harness
    await harness.app.state.stop()
    await runner.cleanup()


FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


# --- the properties -------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(doc=documents, endpoint=st.sampled_from(list(Endpoint)))
def test_parse_accepts_or_refuses_with_a_400_and_accepted_documents_can_be_rewritten(
        doc: dict[str, Any], endpoint: Endpoint) -> None:
    body = dumps(doc)
    try:
        request = parse_inference(body, endpoint, 10_000)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.message
        event(f"refused: {exc.param or exc.code}")
        return
    event("accepted")
    request.doc["model"] = "served-name"  # what the proxy does, then writes it again
    orjson.dumps(request.doc)


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(2, 1100), endpoint=st.sampled_from(list(Endpoint)))
def test_any_depth_is_accepted_only_when_it_can_be_written_again(depth: int,
                                                                 endpoint: Endpoint) -> None:
    body = b'{"model": "m", "messages": [{"role": "x"}], "prompt": "p", "input": "i", "x": ' \
        + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    try:
        request = parse_inference(body, endpoint, 10)
    except InvalidRequest as exc:
        assert depth > MAX_JSON_DEPTH and exc.code == "invalid_json"
        return
    assert depth <= MAX_JSON_DEPTH
    orjson.dumps(request.doc)


def test_any_request_gets_a_clean_answer(fuzz_harness: Harness) -> None:
    loop = asyncio.get_event_loop()

    @FUZZ
    @given(method=methods, path=paths, body=bodies, raw_headers=headers)
    def run(method: str, path: str, body: bytes, raw_headers: dict[bytes, bytes | None]) -> None:
        check(loop.run_until_complete(send(fuzz_harness.app, method, path, body, raw_headers)))

    run()
    still_serves(fuzz_harness)


def test_any_body_on_each_inference_route_gets_a_clean_answer(fuzz_harness: Harness) -> None:
    """Bodies only (valid key, POST): most examples get as far as the parameter checks."""
    loop = asyncio.get_event_loop()

    @FUZZ
    @given(path=st.sampled_from(list(ROUTES)), body=bodies)
    def run(path: str, body: bytes) -> None:
        check(loop.run_until_complete(send(fuzz_harness.app, "POST", path, body,
                                           {b"authorization": GOOD_AUTH})))

    run()
    still_serves(fuzz_harness)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 254, 255, 600, 1023])
def test_too_deep_body_whose_model_is_rewritten_is_400_not_500(fuzz_harness: Harness,
                                                                depth: int) -> None:
    """The finding: 254–1,023 levels parsed, then failed to be written again (model alias)."""
    loop = asyncio.get_event_loop()
    response = loop.run_until_complete(send(fuzz_harness.app, "POST", "/v1/chat/completions",
                                            nested(depth), {b"authorization": GOOD_AUTH}))
    check(response)
    assert response.status == 400
    assert response.json()["error"]["code"] == "invalid_json"
    ok = loop.run_until_complete(send(fuzz_harness.app, "POST", "/v1/chat/completions",
                                      nested(MAX_JSON_DEPTH), {b"authorization": GOOD_AUTH}))
    assert ok.status == 200, ok.body
    assert orjson.loads(fuzz_harness.fake.requests[-1].body)["model"] == "ok"  # rewritten
