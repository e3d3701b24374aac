"""The RSGI edge's own parts: the sink, the body reader, the facts and the ASGI bridge.

The whole data plane over RSGI is ``test_app.py`` (every test there runs over both
interfaces); the real granian serves it in ``tests/integration``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.support.rsgi import FakeHeaders, FakeProtocol, FakeScope

from inferenceops.errors import InvalidRequest, PayloadTooLarge
from inferenceops.gateway.app import GatewayApp
from inferenceops.gateway.rsgi import AsgiBridge, RsgiSink, facts_from_rsgi, read_body
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.sink import ClientGone


def _facts() -> RequestFacts:
    return RequestFacts.from_headers([])


async def test_a_stream_ends_as_the_sink_ends_before_the_handler_returns() -> None:
    """RSGI has no last message: the sink lets go of the transport, and granian ends the
    response then — the caller is not kept waiting while *settle* runs."""
    proto = FakeProtocol([b""], None)
    sink = RsgiSink(proto)
    await sink.start(_facts(), 200, b"text/event-stream")
    await sink.write(b"data: 1\n\n")
    assert proto.response.ended_streams == 0
    await sink.end()
    assert proto.response.ended_streams == 1
    assert proto.response.headers["cache-control"] == "no-cache"
    assert proto.response.headers["content-type"] == "text/event-stream"


async def test_writing_to_a_caller_who_left_raises_client_gone() -> None:
    proto = FakeProtocol([b""], disconnect_after=1)
    sink = RsgiSink(proto)
    await sink.start(_facts(), 200, b"text/event-stream")
    await sink.write(b"data: 1\n\n")
    with pytest.raises(ClientGone):
        await sink.write(b"data: 2\n\n")


async def test_a_failed_stream_gets_its_error_event_and_ends() -> None:
    proto = FakeProtocol([b""], None)
    sink = RsgiSink(proto)
    await sink.start(_facts(), 200, b"text/event-stream")
    await sink.fail(b'data: {"error": {}}\n\n')
    assert proto.response.body == b'data: {"error": {}}\n\n'
    assert proto.response.ended_streams == 1
    await sink.fail(b"again")  # a second failure has nowhere to go, and does not raise
    assert proto.response.body == b'data: {"error": {}}\n\n'


async def test_gone_resolves_when_the_caller_disconnects_and_stops_watching_at_the_end() -> None:
    proto = FakeProtocol([b""], None)
    sink = RsgiSink(proto)
    gone = sink.gone()
    await asyncio.sleep(0)
    assert not gone.done()
    proto.gone.set()
    await asyncio.wait_for(gone, 1)

    quiet = RsgiSink(FakeProtocol([b""], None))
    watch = quiet.gone()
    await quiet.end()
    await asyncio.sleep(0)
    assert not watch.done()  # no disconnect was seen, and none is watched for any more
    assert quiet._watch is None


async def test_a_declared_body_is_read_in_one_call() -> None:
    proto = FakeProtocol([b'{"a": 1}'], None)
    assert await read_body(proto, 100, 8, None) == b'{"a": 1}'
    assert proto.response.body_calls == ["whole"]


async def test_a_body_without_a_length_is_refused_as_soon_as_it_passes_the_limit() -> None:
    seen: list[int] = []

    class Counting(FakeProtocol):
        def __aiter__(self) -> Any:
            inner = super().__aiter__()

            async def pieces() -> Any:
                async for part in inner:
                    seen.append(len(part))
                    yield part
            return pieces()

    proto = Counting([b"x" * 60, b"x" * 60, b"x" * 60], None)
    with pytest.raises(PayloadTooLarge):
        await read_body(proto, 100, None, None)
    assert seen == [60, 60]  # the third piece is never asked for
    small = FakeProtocol([b"ab", b"cd"], None)
    assert await read_body(small, 100, None, None) == b"abcd"


async def test_a_client_leaving_mid_body_is_a_400() -> None:
    class Leaving(FakeProtocol):
        def __aiter__(self) -> Any:
            async def pieces() -> Any:
                yield b"{"
                raise RuntimeError("RSGI protocol is closed")
            return pieces()

    with pytest.raises(InvalidRequest):
        await read_body(Leaving([], None), 100, None, None)


def test_facts_take_the_headers_the_stages_read() -> None:
    scope = FakeScope("POST", "/v1/chat/completions", FakeHeaders([
        ("authorization", "Bearer sk-1"), ("x-request-id", "req-1"), ("content-length", "12"),
        ("x-inferenceops-priority", "batch"), ("x-inferenceops-session", "s-1"),
        ("x-other", "ignored")]), "127.0.0.1:1")
    facts = facts_from_rsgi(scope)
    assert (facts.authorization, facts.request_id, facts.content_length, facts.priority_header,
            facts.session_header) == (b"Bearer sk-1", b"req-1", b"12", b"batch", b"s-1")
    bare = facts_from_rsgi(FakeScope("POST", "/", FakeHeaders([]), "127.0.0.1:1"))
    assert bare.authorization is None and len(bare.request_id) == 24


async def test_the_bridge_hands_an_asgi_app_the_request_and_streams_its_answer() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["scope"] = scope
        messages = [await receive()]
        while messages[-1].get("more_body"):
            messages.append(await receive())
        seen["body"] = b"".join(m["body"] for m in messages)
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-type", b"text/plain"), (b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        seen["ended_mid_stream"] = proto.response.ended_streams
        await send({"type": "http.response.body", "body": b"two"})
        seen["ended_at_last"] = proto.response.ended_streams
        seen["after"] = await receive()

    scope = FakeScope("POST", "/admin/api/v1/teams", FakeHeaders([("x-b", "2")]),
                      "[::1]:5000", query_string="limit=5&q=a%20b")
    proto = FakeProtocol([b"ab", b"cd"], None)
    await AsgiBridge(app)(scope, proto)
    asgi = seen["scope"]
    assert asgi["type"] == "http" and asgi["method"] == "POST"
    assert asgi["path"] == "/admin/api/v1/teams" and asgi["query_string"] == b"limit=5&q=a%20b"
    assert asgi["headers"] == [(b"x-b", b"2")] and asgi["client"] == ("::1", 5000)
    assert seen["body"] == b"abcd"
    assert (seen["ended_mid_stream"], seen["ended_at_last"]) == (0, 1)
    assert seen["after"] == {"type": "http.disconnect"}
    assert proto.response.status == 201 and proto.response.headers["x-a"] == "1"
    assert proto.response.body == b"onetwo"


async def test_the_bridge_answers_a_whole_asgi_response_in_one_call() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    proto = FakeProtocol([b""], None)
    await AsgiBridge(app)(FakeScope("GET", "/healthz", FakeHeaders([]), "127.0.0.1:1"), proto)
    assert proto.response.status == 200 and proto.response.body == b"ok"
    assert proto.response.ended_streams == 0  # response_bytes: no stream was opened


async def test_the_bridge_tells_an_asgi_app_the_client_left_as_an_os_error() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"1", "more_body": True})
        with pytest.raises(OSError):
            await send({"type": "http.response.body", "body": b"2", "more_body": True})

    proto = FakeProtocol([b""], disconnect_after=1)
    await AsgiBridge(app)(FakeScope("GET", "/x", FakeHeaders([]), "127.0.0.1:1"), proto)
    assert proto.response.body == b"1"


def test_a_worker_whose_startup_fails_exits() -> None:
    class Failing:
        async def start(self) -> None:
            raise RuntimeError("no store")

    app = GatewayApp(Failing())  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(SystemExit) as exited:
            app.__rsgi_init__(loop)
    finally:
        loop.close()
    assert exited.value.code == 1
