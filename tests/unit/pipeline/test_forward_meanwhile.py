"""The forward stage does what only the answer needs while the engine works on the request.

The answer's headers (rate-limit headers are formatted on demand) and a stream's filter
chain are ready before the engine's first bytes come back, so the path from those bytes
to the caller holds only the forwarding itself. A fake engine that waits like a real
one (it yields to the event loop once) checks what was ready when it answered.
"""

from __future__ import annotations

import asyncio
import random

import orjson

from inferenceops.engines.openai_compat import UpstreamAnswer
from inferenceops.engines.redaction import Redactor
from inferenceops.errors import UpstreamConnectFailed
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.forward import Forwarder
from inferenceops.pipeline.request import parse_inference
from inferenceops.pipeline.sink import CollectingSink
from inferenceops.platform import Deployment, Endpoint, Replica
from inferenceops.routing import RouteFacts, default_router
from inferenceops.routing.health import FleetHealth
from inferenceops.routing.retry import RetryPolicy

RATE = (b"x-ratelimit-remaining-requests", b"9")
CHUNKS = [b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n',
          b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\n',
          b"data: [DONE]\n\n"]


class Stream:
    """An engine's open stream: its chunks, then the end (b"")."""

    def __init__(self, replica: str) -> None:
        self.replica, self.status, self.content_type = replica, 200, b"text/event-stream"
        self.chunks = list(CHUNKS)

    async def next_chunk(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def close(self) -> None: ...

    def release(self) -> None: ...


class Engine:
    """Refuses the connection on replicas named in ``refusing``; answers on the others after
    one turn of the event loop, noting what the gateway had ready by then."""

    def __init__(self, facts: list[RequestFacts], built: list[int], refusing: set[str]) -> None:
        self.facts, self.built, self.refusing = facts, built, refusing
        self.redactor = Redactor()
        self.seen: list[tuple[bool, int]] = []  # (headers formatted, filter chains built)

    async def _work(self, replica: Replica) -> None:
        if replica.id in self.refusing:
            raise UpstreamConnectFailed("connection refused")
        await asyncio.sleep(0)  # the engine computes; the gateway's loop is free
        self.seen.append((self.facts[0].deferred_headers is None, self.built[0]))

    async def complete(self, deployment: Deployment, replica: Replica, endpoint: str,
                       body: bytes, *, idempotent: bool = False) -> UpstreamAnswer:
        await self._work(replica)
        doc = {"usage": {"prompt_tokens": 1, "completion_tokens": 1}}
        return UpstreamAnswer(200, b"application/json", orjson.dumps(doc), doc)

    async def open_stream(self, deployment: Deployment, replica: Replica, endpoint: str,
                          body: bytes) -> Stream:
        await self._work(replica)
        return Stream(replica.id)


async def forward(stream: bool, refusing: frozenset[str] = frozenset()
                  ) -> tuple[Engine, CollectingSink, list[int]]:
    body = orjson.dumps({"model": "m", "stream": stream,
                         "messages": [{"role": "user", "content": "hi"}]})
    facts = RequestFacts.for_call(Endpoint.CHAT, body, api_key="sk-x")
    formatted: list[int] = []

    def rate_headers() -> list[tuple[bytes, bytes]]:
        formatted.append(1)
        return [RATE]

    facts.defer_response_headers(rate_headers)
    built = [0]

    def filters(f: RequestFacts) -> list[object]:
        built[0] += 1
        return []

    engine = Engine([facts], built, set(refusing))
    fw = Forwarder(engine, default_router(), filters=filters,  # type: ignore[arg-type]
                   health=FleetHealth(rng=random.Random(1)),
                   retry=RetryPolicy(base_s=0.0, max_wait_s=0.0), rng=random.Random(1))
    deployment = Deployment("d", "openai", "m", (Replica("d-0", "http://r0/v1"),
                                                  Replica("d-1", "http://r1/v1")),
                            routing="round_robin")
    sink = CollectingSink()
    await fw.forward(facts, deployment, Endpoint.CHAT, parse_inference(body, Endpoint.CHAT, 4096),
                     RouteFacts(), sink)
    assert len(formatted) == 1  # formatted once, however many attempts
    return engine, sink, built


async def test_a_whole_answers_headers_are_formatted_while_the_engine_works() -> None:
    engine, sink, _ = await forward(stream=False)
    assert engine.seen == [(True, 0)]
    assert RATE in sink.headers and sink.status == 200


async def test_a_streams_headers_and_filter_chain_are_ready_before_the_engine_answers() -> None:
    engine, sink, built = await forward(stream=True)
    assert engine.seen == [(True, 1)]
    assert built == [1] and RATE in sink.headers
    assert sink.body.endswith(b"data: [DONE]\n\n") and b'"usage"' not in sink.body  # usage hidden


async def test_a_request_sent_again_elsewhere_builds_its_chain_once() -> None:
    engine, sink, built = await forward(stream=True, refusing=frozenset({"d-0"}))
    assert engine.seen == [(True, 1)] and built == [1]
    assert sink.body.endswith(b"data: [DONE]\n\n")
