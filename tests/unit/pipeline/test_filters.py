"""Stream filters: an ordered chain that may pass, rewrite, hold back or end a stream."""

from __future__ import annotations

import asyncio

import orjson
from tests.support.asgi import request
from tests.unit.conftest import AUTH, Harness

from inferenceops.errors import InferenceOpsError
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.filters import EndStream, FilterChain, StreamFilter


class Upper:
    def feed(self, chunk: bytes) -> bytes:
        return chunk.upper()

    def flush(self) -> bytes:
        return b""


class HoldUntilEnd:
    """Holds everything back until the stream ends (a bounded stand-in for a buffering filter)."""

    def __init__(self) -> None:
        self.held = b""

    def feed(self, chunk: bytes) -> bytes:
        self.held += chunk
        return b""

    def flush(self) -> bytes:
        held, self.held = self.held, b""
        return held


class Record:
    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def feed(self, chunk: bytes) -> bytes:
        self.seen.append(chunk)
        return chunk

    def flush(self) -> bytes:
        return b"<end>"


def test_a_filter_sees_what_the_one_before_let_through_in_order() -> None:
    last = Record()
    chain = FilterChain([Upper(), last])
    assert chain.feed(b"ab") == b"AB" and last.seen == [b"AB"]
    assert chain.flush() == b"<end>"


def test_a_chunk_held_back_stops_there_and_comes_out_through_the_rest_at_the_end() -> None:
    last = Record()
    chain = FilterChain([HoldUntilEnd(), Upper(), last])
    assert chain.feed(b"one ") == b"" and chain.feed(b"two") == b""
    assert last.seen == []  # nothing reached the filters after the one holding
    assert chain.flush() == b"ONE TWO<end>" and last.seen == [b"ONE TWO"]


def test_the_same_bytes_object_passes_when_no_filter_changes_it() -> None:
    chunk = b"data: {}\n\n"
    assert FilterChain([Record(), Record()]).feed(chunk) is chunk


class StopAtSecondEvent:
    def __init__(self) -> None:
        self.events = 0

    def feed(self, chunk: bytes) -> bytes:
        self.events += chunk.count(b"\n\n")
        if self.events >= 2:
            raise EndStream(InferenceOpsError("stopped by policy", code="content_filtered",
                                              status=400))
        return chunk

    def flush(self) -> bytes:
        return b""


async def test_a_filter_ends_the_stream_with_an_error_event_and_the_engine_is_let_go(
        harness: Harness) -> None:
    def extra(facts: RequestFacts) -> list[StreamFilter]:
        return [StopAtSecondEvent()]

    harness.app.state.pipeline.forwarder._filters = extra
    harness.fake.chunk_delay_s = 0.01
    body = {"model": "chat-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    reply = await request(harness.app, "POST", "/v1/chat/completions", body=orjson.dumps(body),
                          headers=AUTH)
    events = [e for e in reply.body.split(b"\n\n") if e]
    assert reply.status == 200 and len(events) == 2  # one passed, then the error
    error = orjson.loads(events[-1].removeprefix(b"data: "))["error"]
    assert error["code"] == "content_filtered" and error["message"] == "stopped by policy"
    assert b"[DONE]" not in reply.body
    for _ in range(200):  # the upstream connection was dropped: the engine stops streaming
        if harness.fake.active_streams == 0:
            break
        await asyncio.sleep(0.01)
    assert harness.fake.active_streams == 0
