"""The lines admission's promises rest on, each guarded through the real handler (issue 8, item 10).

Every test drives the gateway application in-process with admission on (memory
and real Redis ledgers) against a fake engine over real HTTP, then reads the
books back through ``GET /v1/quota`` — requests and tokens counted this minute,
concurrency slots held, money spent and reserved — and the deployment queue
through ``/metrics``. Each test names, in its docstring, the hand-made mutant it
was written to kill (applied by hand once, in a worktree copy: the test failed on
it and passes on the real code; ``bench/results/mutation-latest.md``).

What the books must say afterwards (``docs/admission.md``, "What a request is charged"):

* answered — its usage at the model's prices; counted in rpm; its slot back;
* refused by the queue (full, or the wait ran out), or the client left the queue,
  or it never reached an engine (every replica refused the connection) — nothing:
  no rpm, no tokens, no money, no slot, no reservation left behind;
* refused before admission (no inference scope, a body over the limit) — the
  books are never touched and the engine never sees it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import web
from tests.support import fake_upstream
from tests.support.asgi import Response, request
from tests.support.fake_upstream import FakeUpstream
from tests.unit.conftest import TEST_SECRET, Harness, make_harness

from inferenceops.admission.control import AdmissionControl
from inferenceops.admission.ledger import Ledger
from inferenceops.admission.memory_ledger import MemoryLedger
from inferenceops.admission.redis_ledger import RedisLedger
from inferenceops.platform import ApiKey, Identity, KeyHasher, Principal, Snapshot
from inferenceops.platform.identity import key_power
from inferenceops.platform.policy import (
    Budget,
    BudgetRule,
    LimitRule,
    Period,
    Policy,
    Price,
    RateLimit,
    Scope,
    from_nanos,
)

REDIS_URL = os.environ.get("INFERENCEOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HASHER = KeyHasher(TEST_SECRET.encode())
TEAM_KEY, OTHER_KEY, BATCH_KEY = "sk-cl-team-key", "sk-cl-other-key", "sk-cl-batch-key"
VIEWER_KEY, BATCH_SCOPE_KEY = "sk-cl-viewer-key", "sk-cl-batchscope-key"
OPS_KEY, SOLO_KEY, SOLO_KEY_2 = "sk-cl-ops-key", "sk-cl-solo-key", "sk-cl-solo2-key"
MODELS = ("chat-model", "unterminated-model", "dead-model", "broken-model", "no-usage-model",
          "empty-cut-model")
CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
UNIT = 1000  # nano-units per input token; output tokens cost ten times that
#: What one answered non-streamed request costs: the fake engine reports 3 prompt + 1 completion.
ANSWERED = 3 * UNIT + 1 * 10 * UNIT
#: High enough never to refuse: what is measured is what is left behind.
POLICY = Policy(
    limits=[LimitRule(Scope.TEAM, "team_ml", RateLimit(rpm=10_000, tpm=10**8, concurrency=100))],
    budgets=[BudgetRule(Scope.TEAM, "team_ml", Budget(10**15, Period.MONTHLY))],
    prices={name: Price.per_token(input=UNIT, output=10 * UNIT) for name in MODELS},
    team_names={"team_ml": "ml"})
MAX_BODY = 4096


# -- the world: keys, a fake engine with one more misbehaviour, the gateway --------------------

def identity() -> Identity:
    member, viewer = Principal("usr_member"), Principal("usr_viewer")
    root = Principal("usr_root", platform_role="platform-admin")

    def key(secret: str, key_id: str, principal: Principal, scopes: frozenset[str],
            team: str | None = "team_ml", **extra: Any) -> tuple[bytes, ApiKey]:
        return HASHER.digest(secret), ApiKey(key_id, secret[:8], principal, team, scopes, **extra)

    inference = frozenset({"inference"})
    # A team viewer's key made with every scope keeps only what a viewer may do: no inference.
    viewer_power = key_power(frozenset({"inference", "batch", "admin"}), "team_ml",
                             service_account=False, team_role="viewer")
    assert viewer_power is not None and "inference" not in viewer_power.scopes
    keys = [key(TEAM_KEY, "key_team", member, inference),
            key(OTHER_KEY, "key_other", member, inference),
            key(BATCH_KEY, "key_batch", member, inference, background_only=True),
            key(VIEWER_KEY, "key_viewer", viewer, viewer_power.scopes),
            key(BATCH_SCOPE_KEY, "key_batchscope", member, frozenset({"batch"})),
            key(OPS_KEY, "key_ops", member, inference, team="team_ops"),
            key(SOLO_KEY, "key_solo", root, inference, team=None),
            key(SOLO_KEY_2, "key_solo2", root, inference, team=None)]
    return Identity(keys, {"team_ml": list(MODELS), "team_ops": list(MODELS)})


class EdgeUpstream(FakeUpstream):
    """The fake engine, plus three answers at the edges of what settlement must handle.

    * ``unterminated``: a stream whose last event has no blank line after it — three
      content deltas, the usage chunk (when asked for), then ``data: [DONE]`` and end of
      stream; the tail is only ever passed on by the taps' final ``flush``;
    * ``no-usage``: a whole answer with no ``usage`` (engines that do not report it);
    * ``empty-crash``: a stream that sends the assistant's role with empty content, then
      drops the connection — cut before the first token.
    """

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        doc = orjson.loads(await request.read())  # aiohttp keeps the body: the parent reads it again
        model = doc.get("model")
        if model not in ("unterminated", "no-usage", "empty-crash"):
            return await super()._chat(request)
        self.requests.append(fake_upstream.Seen(request.path, dict(request.headers),
                                                await request.read()))
        if model == "no-usage":
            answer = fake_upstream._completion(model)
            del answer["usage"]
            return web.json_response(answer)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        if model == "empty-crash":
            await resp.prepare(request)
            role = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                 "finish_reason": None}]}
            await resp.write(b"data: " + orjson.dumps(role) + b"\n\n")
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.prepare(request)
        for i in range(3):
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}]}
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        if (doc.get("stream_options") or {}).get("include_usage"):
            usage = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                     "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3,
                                              "total_tokens": 6}}
            await resp.write(b"data: " + orjson.dumps(usage) + b"\n\n")
        await resp.write(b"data: [DONE]")  # no "\n\n": the stream simply ends
        await resp.write_eof()
        return resp


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[EdgeUpstream, int]]:
    engine = EdgeUpstream()
    runner, port = await fake_upstream.start(engine)
    yield engine, port
    await runner.cleanup()


@pytest.fixture(params=["memory", "redis"])
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[Ledger]:
    if request.param == "memory":
        yield MemoryLedger()
        return
    made = RedisLedger(REDIS_URL, prefix=f"test-cl-{uuid.uuid4().hex[:12]}")
    try:
        await made.ping()
    except Exception as exc:  # noqa: BLE001 - reported as the skip reason
        await made.close()
        pytest.skip(f"no Redis answers at {REDIS_URL}: {exc}")
    yield made  # the gateway's stop() closes it


def refused_port() -> int:
    """A local port nobody listens on: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def platform(port: int, chat_extra: str) -> str:
    dead = [refused_port(), refused_port()]
    return f"""
deployments:
  - name: fake
    engine: openai
    served_model: ok
    replicas: [{{url: "http://127.0.0.1:{port}/v1"}}]
    timeouts: {{first_byte_s: 5, between_chunks_s: 5, total_s: 30}}
{chat_extra}
  - name: unterminated
    engine: openai
    served_model: unterminated
    replicas: [{{url: "http://127.0.0.1:{port}/v1"}}]
  - name: dead
    engine: openai
    served_model: ok
    replicas: [{{url: "http://127.0.0.1:{dead[0]}/v1"}}, {{url: "http://127.0.0.1:{dead[1]}/v1"}}]
    timeouts: {{connect_s: 2}}
  - name: broken
    engine: openai
    served_model: error-500
    replicas: [{{url: "http://127.0.0.1:{port}/v1"}}]
  - name: no-usage
    engine: openai
    served_model: no-usage
    replicas: [{{url: "http://127.0.0.1:{port}/v1"}}]
  - name: empty-cut
    engine: openai
    served_model: empty-crash
    replicas: [{{url: "http://127.0.0.1:{port}/v1"}}]
models:
  - {{name: chat-model, deployment: fake}}
  - {{name: unterminated-model, deployment: unterminated}}
  - {{name: dead-model, deployment: dead}}
  - {{name: broken-model, deployment: broken}}
  - {{name: no-usage-model, deployment: no-usage}}
  - {{name: empty-cut-model, deployment: empty-cut}}
"""


@pytest.fixture
async def make_gateway(upstream: tuple[EdgeUpstream, int]
                       ) -> AsyncIterator[Callable[..., Any]]:
    started: list[Harness] = []

    async def make(ledger: Ledger, policy: Policy = POLICY, chat_extra: str = "",
                   fail_open: bool = False) -> Harness:
        engine, port = upstream
        h = await make_harness(platform(port, chat_extra), engine, port, max_body_bytes=MAX_BODY)
        started.append(h)
        state = h.app.state
        await state.admission.ledger.close()  # type: ignore[union-attr]
        state.admission = AdmissionControl(ledger, fail_open=fail_open, outbox=state.outbox)
        state.snapshot = Snapshot(state.snapshot.catalog, identity(), policy)
        return h

    yield make
    for h in started:
        await h.app.state.stop()


# -- reading the books ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Books:
    """The team's counters, as ``GET /v1/quota`` shows them to the team."""

    requests: int  # admitted this minute
    tokens: int  # reserved or used this minute
    slots: int  # concurrency slots held now
    spent: str
    reserved: str


NOTHING = Books(requests=0, tokens=0, slots=0, spent="0", reserved="0")


async def books(h: Harness) -> Books:
    resp = await request(h.app, "GET", "/v1/quota", headers=auth(TEAM_KEY))
    assert resp.status == 200, resp.body
    doc = resp.json()
    used = {item["limit"]: item["used"] for item in doc["limits"] if item["scope"] == "team"}
    (budget,) = (b for b in doc["budgets"] if b["scope"] == "team")
    return Books(used["requests_per_minute"], used["tokens_per_minute"],
                 used["concurrent_requests"], budget["spent"], budget["reserved"])


def answered(n: int, tokens_each: int = 4, cost_each: int = ANSWERED) -> Books:
    """The books after ``n`` requests that were answered and settled, and nothing else."""
    return Books(requests=n, tokens=n * tokens_each, slots=0, spent=from_nanos(n * cost_each),
                 reserved="0")


async def queue(h: Harness, deployment: str = "fake") -> tuple[int, int]:
    """(in flight, waiting) on the deployment's gate, from /metrics."""
    text = (await request(h.app, "GET", "/metrics")).body.decode()
    values = {}
    for gauge in ("inferenceops_queue_in_flight", "inferenceops_queue_waiting"):
        prefix = f'{gauge}{{deployment="{deployment}"}} '
        (line,) = (line for line in text.splitlines() if line.startswith(prefix))
        values[gauge] = int(line[len(prefix):])
    return values["inferenceops_queue_in_flight"], values["inferenceops_queue_waiting"]


# -- driving requests ----------------------------------------------------------------------------

def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def chat(h: Harness, doc: dict[str, Any] | None = None, key: str = TEAM_KEY,
               headers: dict[str, str] | None = None, **kwargs: Any) -> Response:
    return await request(h.app, "POST", "/v1/chat/completions", body=orjson.dumps(doc or CHAT),
                         headers={**auth(key), **(headers or {})}, **kwargs)


class Held:
    """A request whose client reads nothing of the answer until ``let_go``: it keeps its slot.

    The gateway is blocked sending the response headers, so the request stays admitted
    (slot taken, reservations held) for exactly as long as the test wants.
    """

    def __init__(self, h: Harness, doc: dict[str, Any] | None = None, key: str = TEAM_KEY) -> None:
        body = orjson.dumps(doc or CHAT)
        self.answering = asyncio.Event()
        self._go = asyncio.Event()
        self.status = 0
        headers = [(b"authorization", f"Bearer {key}".encode()),
                   (b"content-length", str(len(body)).encode())]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "path": "/v1/chat/completions",
                 "raw_path": b"/v1/chat/completions", "query_string": b"", "headers": headers,
                 "client": ("127.0.0.1", 50001), "server": ("127.0.0.1", 8080), "scheme": "http",
                 "root_path": ""}
        sent = False
        never = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await never.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.answering.set()
                await self._go.wait()

        self.task = asyncio.ensure_future(h.app(scope, receive, send))

    async def started(self) -> None:
        await asyncio.wait_for(self.answering.wait(), 10)

    async def let_go(self) -> int:
        self._go.set()
        await asyncio.wait_for(self.task, 10)
        return self.status


async def until(condition: Callable[[], Any], what: str, timeout_s: float = 10.0) -> None:
    """Wait for an async ``condition`` to hold (checked every 10 ms)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


ONE_SLOT_NO_WAITING = "    capacity: 1\n    queue: {max_waiting: 0}"


# -- (a) the fair queue refuses, or the client leaves it: nothing is held ------------------------

async def test_a_request_the_full_queue_refuses_holds_nothing(make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    """Mutant: ``AdmissionControl.admit`` without ``await self._undo(ticket)`` on ``QueueRejected``.

    The refused request's rpm count, token and budget reservations stayed behind.
    """
    h = await make_gateway(ledger, chat_extra=ONE_SLOT_NO_WAITING)
    holder = Held(h)
    await holder.started()
    before = await books(h)
    assert before.requests == 1 and before.slots == 1 and before.reserved != "0"
    refused = await chat(h)
    assert refused.status == 429
    error = refused.json()["error"]
    assert error["code"] == "queue_full" and error["limit"] == "deployment_capacity"
    assert int(refused.headers["retry-after"]) >= 1
    assert await books(h) == before, "the refused request left something in the ledger"
    assert await queue(h) == (1, 0)
    assert await holder.let_go() == 200
    assert await books(h) == answered(1)
    assert await queue(h) == (0, 0)


async def test_a_request_whose_queue_wait_runs_out_holds_nothing(make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    """Mutant: as above, on ``queue_timeout`` (the wait ran out after queueing)."""
    h = await make_gateway(ledger, chat_extra=(
        "    capacity: 1\n    queue: {max_waiting: 5, interactive_max_wait_s: 0.2}"))
    holder = Held(h)
    await holder.started()
    before = await books(h)
    refused = await chat(h)
    assert refused.status == 429 and refused.json()["error"]["code"] == "queue_timeout"
    assert await books(h) == before, "the timed-out request left something in the ledger"
    assert await queue(h) == (1, 0)
    assert await holder.let_go() == 200
    assert await books(h) == answered(1)
    assert await queue(h) == (0, 0)


async def test_a_client_that_leaves_the_queue_holds_nothing_and_its_place_is_gone(
        make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    """Mutants: ``admit`` without ``await self._undo(ticket)`` when cancelled while waiting; the
    gate's ``_wait`` without ``self._leave(w, _CANCELLED)``.

    The request's task is cancelled while it waits (what a server or a timeout does when the
    client is gone): its reservations are released and its place in the queue is given up.
    """
    h = await make_gateway(ledger, chat_extra="    capacity: 1\n    queue: {max_waiting: 5}")
    holder = Held(h)
    await holder.started()
    before = await books(h)
    leaving = asyncio.ensure_future(chat(h, {**CHAT, "messages": [
        {"role": "user", "content": "I will not wait"}]}))

    async def one_waiting() -> bool:
        return await queue(h) == (1, 1)

    await until(one_waiting, "the second request to wait in the queue")
    upstream_requests = len(h.fake.requests)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await queue(h) == (1, 0), "the cancelled request kept its place in the queue"
    assert await books(h) == before, "the cancelled request left something in the ledger"
    assert await holder.let_go() == 200
    assert await books(h) == answered(1)
    assert await queue(h) == (0, 0)
    assert len(h.fake.requests) == upstream_requests, "the engine saw the request that left"
    assert (await chat(h)).status == 200  # the slot came back, and nobody ghost-waits before us
    assert await books(h) == answered(2)


async def test_an_answered_request_gives_its_slot_back_to_the_next_in_the_queue(
        make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    """Mutant: ``AdmissionControl.finish`` without ``ticket.gate.release()``: the next request
    waited for a slot that never came back (``queue_timeout``) and the gauge kept 1 in flight."""
    h = await make_gateway(ledger, chat_extra=(
        "    capacity: 1\n    queue: {max_waiting: 5, interactive_max_wait_s: 5}"))
    for n in range(1, 4):
        assert (await chat(h)).status == 200
        assert await queue(h) == (0, 0)
        assert await books(h) == answered(n)


# -- (b) never reached an engine: released, not charged ------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
async def test_a_request_no_replica_would_take_is_released_not_charged(
        make_gateway, ledger, stream: bool) -> None:  # type: ignore[no-untyped-def]
    """Mutants: ``finish`` settling (charging the prompt estimate and the full max output)
    instead of releasing when ``reached_engine`` is false; the forwarder marking a refused
    connection as having reached the engine.

    Both replicas refuse the connection: 503 (no replica available, Retry-After), and the
    books are as if it never came — not even counted in rpm, no slot, no money, no reservation.
    """
    h = await make_gateway(ledger)
    resp = await chat(h, {**CHAT, "model": "dead-model", "stream": stream})
    assert resp.status == 503
    error = resp.json()["error"]
    assert error["code"] == "no_replica_available" and error["request_id"]
    assert await books(h) == NOTHING
    assert (await chat(h)).status == 200  # and the next request is charged as usual
    assert await books(h) == answered(1)


async def test_an_engine_that_answered_an_error_is_counted_but_charged_nothing(
        make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    """The other side of the line above: an engine that got the request and answered 500 is
    settled to zero tokens (it stays in rpm) — never released, never charged."""
    h = await make_gateway(ledger)
    resp = await chat(h, {**CHAT, "model": "broken-model"})
    assert resp.status == 502
    assert await books(h) == Books(requests=1, tokens=0, slots=0, spent="0", reserved="0")


# -- (c) the data plane needs the inference scope ------------------------------------------------

@pytest.mark.parametrize("secret", [VIEWER_KEY, BATCH_SCOPE_KEY], ids=["viewer", "batch-scope"])
async def test_a_key_without_the_inference_scope_is_refused_before_anything_is_held(
        make_gateway, ledger, secret: str) -> None:  # type: ignore[no-untyped-def]
    """Mutant: ``handlers.inference`` without ``require_scope(key, SCOPE_INFERENCE)``.

    A team viewer's key (its power has no inference) or a batch-only key: 403, the engine
    never sees the request and the team's books do not move.
    """
    h = await make_gateway(ledger)
    for stream in (False, True):
        resp = await chat(h, {**CHAT, "stream": stream}, key=secret)
        assert resp.status == 403
        error = resp.json()["error"]
        assert error["code"] == "permission_denied" and "'inference' scope" in error["message"]
    assert h.fake.requests == []
    assert await books(h) == NOTHING


# -- (d) a background-only key queues as background, header or not -------------------------------

async def test_a_background_only_key_without_the_priority_header_queues_behind_interactive(
        make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    """Mutant: ``handlers.inference`` without ``priority = Priority.BACKGROUND`` for a
    ``background_only`` key: sent with no ``x-inferenceops-priority`` header, it was served
    as interactive — first come first served ahead of an interactive request of its team.
    """
    h = await make_gateway(ledger, chat_extra="    capacity: 1\n    queue: {max_waiting: 5}")
    holder = Held(h, key=OTHER_KEY)
    await holder.started()

    def asking(text: str) -> dict[str, Any]:
        return {**CHAT, "messages": [{"role": "user", "content": text}]}

    background = asyncio.ensure_future(chat(h, asking("background"), key=BATCH_KEY))

    def waiting(n: int) -> Callable[[], Any]:
        async def check() -> bool:
            return await queue(h) == (1, n)
        return check

    await until(waiting(1), "the background-only key's request to queue")
    interactive = asyncio.ensure_future(chat(h, asking("interactive"), key=TEAM_KEY))
    await until(waiting(2), "the interactive request to queue behind it")
    assert await holder.let_go() == 200
    assert [(await background).status, (await interactive).status] == [200, 200]
    served = [orjson.loads(seen.body)["messages"][0]["content"] for seen in h.fake.requests[1:]]
    assert served == ["interactive", "background"]
    assert await books(h) == answered(3)
    assert await queue(h) == (0, 0)


# -- (e) the end of a stream reaches the client --------------------------------------------------

@pytest.mark.parametrize("metered", [True, False], ids=["usage-tapped", "no-admission-rules"])
async def test_a_streams_unterminated_last_event_reaches_the_client(
        make_gateway, ledger, metered: bool) -> None:  # type: ignore[no-untyped-def]
    """Mutants: ``proxy._stream`` without ``+ tap.flush()`` at the end of the stream;
    ``UsageTap.flush`` returning nothing; the scrubber's final ``flush`` dropped.

    The engine's last event (``data: [DONE]``) has no blank line after it, so the taps hold it
    back waiting for its end; at the end of the stream it must still go out. Metered, the
    usage chunk the gateway asked for is hidden and charged exactly.
    """
    h = await make_gateway(ledger, policy=POLICY if metered else Policy())
    resp = await chat(h, {**CHAT, "model": "unterminated-model", "stream": True})
    assert resp.status == 200
    assert resp.body.endswith(b"data: [DONE]"), resp.body[-80:]
    assert resp.body.count(b"data: ") == 4  # three deltas and [DONE]
    assert b'"usage"' not in resp.body
    if metered:
        asked = orjson.loads(h.fake.requests[-1].body)
        assert asked["stream_options"] == {"include_usage": True}
        assert await books(h) == answered(1, tokens_each=6, cost_each=3 * UNIT + 3 * 10 * UNIT)


# -- (f) the body limit: exactly the limit passes, one byte more is a 413 ------------------------

def body_of(size: int) -> bytes:
    """A valid chat request of exactly ``size`` bytes."""
    doc = {**CHAT, "messages": [{"role": "user", "content": ""}]}
    pad = size - len(orjson.dumps(doc))
    body = orjson.dumps({**doc, "messages": [{"role": "user", "content": "x" * pad}]})
    assert len(body) == size
    return body


def parts_of(body: bytes, n: int) -> list[bytes]:
    step = -(-len(body) // n)
    return [body[i:i + step] for i in range(0, len(body), step)]


@pytest.mark.parametrize("how", ["declared", "one-message", "streamed"])
async def test_a_body_of_exactly_the_limit_is_served_and_one_byte_more_is_413(
        make_gateway, ledger, how: str) -> None:  # type: ignore[no-untyped-def]
    """Mutants: ``>`` → ``>=`` in ``check_declared_size`` (declared Content-Length) and in
    ``read_body`` (a body in one message; a body streamed in parts without a length)."""
    h = await make_gateway(ledger)

    async def send(size: int) -> Response:
        body = body_of(size)
        if how == "declared":
            return await request(h.app, "POST", "/v1/chat/completions", body=body,
                                 headers=auth(TEAM_KEY))  # Content-Length: size
        return await request(h.app, "POST", "/v1/chat/completions", headers=auth(TEAM_KEY),
                             body_parts=[body] if how == "one-message" else parts_of(body, 3))

    at_limit = await send(MAX_BODY)
    assert at_limit.status == 200, at_limit.body
    over = await send(MAX_BODY + 1)
    assert over.status == 413 and over.json()["error"]["code"] == "payload_too_large"
    assert len(h.fake.requests) == 1
    assert await books(h) == answered(1)


async def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(
        make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    """Mutant: ``check_declared_size`` dropped or off by one upwards: a Content-Length of one
    byte over the limit is refused on the header alone, whatever body follows."""
    h = await make_gateway(ledger)
    resp = await request(h.app, "POST", "/v1/chat/completions", body=orjson.dumps(CHAT),
                         headers={**auth(TEAM_KEY), "content-length": str(MAX_BODY + 1)})
    assert resp.status == 413 and resp.json()["error"]["code"] == "payload_too_large"
    assert str(MAX_BODY + 1) in resp.json()["error"]["message"]
    assert h.fake.requests == []
    assert await books(h) == NOTHING
