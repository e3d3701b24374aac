"""Property test against the real server: bad bodies and headers never get a 5xx.

A bounded version of ``tests/unit/gateway/test_fuzz_dataplane.py`` through the
whole stack — granian's HTTP parser, the ASGI app, the pooled upstream client,
a fake engine — on a gateway of its own (so nothing it sends can disturb the
shared one). Requests are written byte for byte on fresh sockets, so header
values, ``Content-Length`` and methods are exactly what hypothesis drew.

The invariant: every answer the application gives (it carries ``x-request-id``)
is below 500 and, when an error, ``{"error": {"message", "type", "param",
"code"}}``. A message the HTTP parser itself refuses as malformed (a
non-numeric ``Content-Length``, a control character in a header) never reaches
the application; granian answers that with a bare 400, which is allowed. After
the run the server still serves, and its log holds no unhandled error.
"""

from __future__ import annotations

import socket
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.integration._harness import ADMIN_KEY, FakeUpstreams, Gateway, SpawnGateway, platform_yaml
from tests.support.dataplane_fuzz import ROUTES, bodies, nested, weighted
from tests.support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

GOOD_AUTH = f"Bearer {ADMIN_KEY}".encode()
FORBIDDEN = {ord("\r"), ord("\n")}  # they would end the header line: a different request


#: A valid request's headers; with ``gpt-alias`` the proxy writes the body again.
REWRITTEN: dict[bytes, bytes | None] = {b"Authorization": GOOD_AUTH,
                                        b"Content-Length": b"<correct>"}


def _field(max_size: int) -> st.SearchStrategy[bytes]:
    """A header value as a client can put it on the wire: any bytes but CR and LF."""
    return st.binary(max_size=max_size).map(lambda b: bytes(c for c in b if c not in FORBIDDEN))


headers = st.fixed_dictionaries({
    b"Authorization": weighted(
        (5, st.just(GOOD_AUTH)), (1, st.none()), (1, _field(60)),
        (1, st.integers(513, 6000).map(lambda n: b"Bearer " + b"k" * n))),
    b"Content-Type": st.none() | st.just(b"application/json") | _field(30),
    b"Content-Length": weighted(
        (5, st.just(b"<correct>")), (1, st.none()),
        # never more than is sent: the server would rightly wait for the rest
        (1, st.sampled_from([b"0", b"-1", b"abc", b"1e3", b"99999999999999999999"]))),
    b"x-request-id": st.none() | _field(40) | st.just(b"r" * 300),
    b"x-inferenceops-priority": st.none() | st.sampled_from([b"background", b"bulk"])
    | _field(12),
})
methods = weighted((5, st.just(b"POST")), (1, st.sampled_from([b"GET", b"PUT", b"DELETE",
                                                              b"OPTIONS", b"FOO"])))
paths = weighted((5, st.sampled_from([p.encode() for p in ROUTES])),
                 (1, st.sampled_from([b"/v1/models", b"/v1/models/%ff%00", b"/", b"/nope",
                                      b"/v1/chat/completions/x", b"/_sim/x/y", b"/v1/quota"])))


def exchange(port: int, method: bytes, path: bytes, body: bytes,
             fields: dict[bytes, bytes | None]) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection (``Connection: close``); status, headers, body."""
    head = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    for name, value in fields.items():
        if value == b"<correct>":
            value = b"%d" % len(body)
        if value is not None:
            head.append(name + b": " + value)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    raw_head, _, payload = received.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    answer = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines)}
    return int(status_line.split()[1]), answer, payload


def check(status: int, answer: dict[str, str], payload: bytes) -> None:
    if "x-request-id" not in answer:  # refused by the HTTP parser, before the application
        assert (status, payload) == (400, b""), (status, answer, payload[:300])
        return
    assert 200 <= status < 500, (status, payload[:500])
    if status >= 400:
        error = orjson.loads(payload)["error"]
        assert {"message", "type", "param", "code"} <= set(error), error
        assert isinstance(error["message"], str) and error["message"], error
        assert error["type"] != "server_error", error


@pytest.fixture
def fuzz_gateway(spawn_gateway: SpawnGateway, upstreams: FakeUpstreams) -> Gateway:
    url = upstreams.serve(FakeUpstream())
    deployment: dict[str, Any] = {"engine": "openai", "served_model": "ok",
                                  "replicas": [{"url": url}],
                                  "timeouts": {"first_byte_s": 30, "total_s": 60}}
    config = platform_yaml(
        [{"name": "fake", **deployment}],
        [{"name": "chat-model", "deployment": "fake", "aliases": ["gpt-alias"]},
         {"name": "ok", "deployment": "fake"},
         {"name": "embed-model", "deployment": "fake", "type": "embedding"}])
    return spawn_gateway(config=config, name="fuzz", env={"INFERENCEOPS_MAX_BODY_BYTES": "65536"})


def test_real_server_answers_any_request_cleanly_and_keeps_serving(fuzz_gateway: Gateway) -> None:
    port = fuzz_gateway.port

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(method=methods, path=paths, body=bodies, fields=headers)
    @example(b"POST", b"/v1/chat/completions", nested(300), REWRITTEN)  # the finding: a 500
    @example(b"POST", b"/v1/chat/completions", nested(1023), REWRITTEN)
    def run(method: bytes, path: bytes, body: bytes, fields: dict[bytes, bytes | None]) -> None:
        check(*exchange(port, method, path, body, fields))

    run()
    ok = orjson.dumps({"model": "gpt-alias", "messages": [{"role": "user", "content": "hi"}],
                       "temperature": 0.2, "stream_options": {"include_usage": True}})
    status, _, payload = exchange(port, b"POST", b"/v1/chat/completions", ok,
                                  {b"Authorization": GOOD_AUTH, b"Content-Length": b"<correct>"})
    assert status == 200, payload
    assert fuzz_gateway.proc.poll() is None
    assert "unhandled error" not in fuzz_gateway.output()
