"""The usage ledger agrees with the engine, end to end (issue #10).

A real ``serve`` process fronts two simulated engines mounted in-process (``/_sim/<mount>``):
``fast`` (the built-in ``test-fast`` profile) serves model ``chat``, and ``slow`` (a profile
written here whose decode step is ``STEP_MS``) serves ``chat-slow``; both models have prices
with nine decimal places, so every cost is rounded. A team key that may use those two (and
not ``chat-private``) drives the gateway with the official ``openai`` SDK, one request at a
time: answered chat and legacy completions, plain and streamed (with and without
``stream_options.include_usage``), requests the gateway refuses (400 invalid parameter, 404
model not granted) or the engine refuses (400: prompt + max_tokens over its context), and
streams the client closes after a few chunks. Around every request the engine's own vLLM
counters (``/_sim/<mount>/metrics``: prompt and generation tokens, prefix-cache hits) are read
once the engine is idle, so each request's engine work is known exactly. A graceful stop then
flushes the outbox, and the ledger (``usage_records``) is read from the store: the default
SQLite file, and a scratch PostgreSQL database.

What the ledger must say (``pipeline.settle``):

* an answered request carries the usage the engine reported: the engine's own count, and
  the SDK's ``usage`` where the client asked for it. A stream whose client did not ask still
  carries it: the gateway asks the engine on its behalf and hides that chunk from the client;
* a request no engine served — refused by the gateway, or refused by the engine before it
  generated anything — costs 0, used 0 tokens and names its error code;
* a stream the client left is ``client_disconnected`` with status 200 (the status already
  sent), ``tokens_reported`` false, and completion tokens = one per content event the gateway
  passed on. The simulator sends one event per token (its step is far longer than the
  gateway takes to react, so it never batches two tokens into one event here), and a
  departing client makes the gateway close the engine connection, which aborts the sequence
  before the engine's next step: so that count is exactly what the engine generated for the
  request — not 0, not max_tokens. (Were the gateway ever slower than one ``STEP_MS`` to
  react, the engine would have generated a token nobody read; the assertion then fails and
  shows the client's, the ledger's and the engine's counts.) Its prompt is the gateway's own
  estimate, since the engine's usage comes only with a stream's end: o200k_base tokens plus
  chat framing, or — while the tokenizer is still loading, i.e. for the first estimates a
  fresh process makes — one token per 3 body bytes + 1; once loaded it stays loaded;
* every record costs ceil((uncached prompt x input + cached x cached-input + completion x
  output) per million tokens) nano-units, computed here with Decimal from the YAML prices.
"""

from __future__ import annotations

import math
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest

from inferenceops.metering.tokens import TokenCounter
from inferenceops.outbox.records import UsageRecord
from inferenceops.store import Database
from inferenceops.store.repo.usage import list_usage
from tests.integration._harness import ADMIN_KEY, Gateway, platform_yaml
from tests.integration._support import Store, store_backend
from tests.support.postgres import run_sync

pytestmark = pytest.mark.integration

SECRET = "integration-platform-secret-for-the-metering-e2e-test"
#: The slow engine's decode step: far longer than a client's departure takes to reach it.
STEP_MS = 200
#: Natural answer lengths on the slow engine: a cut stream never gets near them.
SLOW_NATURAL = (150, 200)
CUT_MAX_TOKENS = 300
#: Prices per million tokens, platform currency; a nano-unit is 1e-9 of it.
PRICES: dict[str, dict[str, str]] = {
    "chat": {"input_per_million": "0.123456789", "output_per_million": "0.987654321",
             "cached_input_per_million": "0.012345679"},
    "chat-slow": {"input_per_million": "1.500000001", "output_per_million": "2.250000007"},
    "chat-private": {"input_per_million": "5", "output_per_million": "5"},
}
MOUNTS = {"fast-0": "chat", "slow-0": "chat-slow"}
#: Over three 16-token blocks of the simulator's tokens: repeated, it is served from its cache.
SHARED_SYSTEM = ("You are a careful assistant for the platform team. Answer in plain words, keep "
                 "every answer short, name the model and the deployment you used, and never "
                 "invent numbers that you were not given by the user in this conversation.")
READY_S = 15.0


# --- the engine's counters ---------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """Token counters of the simulated engines (vLLM's series)."""

    prompt: int = 0
    generation: int = 0
    cache_hits: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.prompt + other.prompt, self.generation + other.generation,
                      self.cache_hits + other.cache_hits)

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.prompt - other.prompt, self.generation - other.generation,
                      self.cache_hits - other.cache_hits)


_SAMPLE = re.compile(r"^(vllm:[a-z_]+)\{[^}]*\} (\S+)$", re.MULTILINE)


def _engine(gw: Gateway, mount: str) -> tuple[Counts, float]:
    """(counters, requests running or waiting) of one simulated replica, from its /metrics."""
    with urllib.request.urlopen(f"{gw.origin}/_sim/{mount}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values: dict[str, float] = {}
    for name, value in _SAMPLE.findall(text):
        values[name] = values.get(name, 0.0) + float(value)
    counts = Counts(int(values["vllm:prompt_tokens_total"]),
                    int(values["vllm:generation_tokens_total"]),
                    int(values["vllm:prefix_cache_hits_total"]))
    return counts, values["vllm:num_requests_running"] + values["vllm:num_requests_waiting"]


def _idle_engines(gw: Gateway) -> dict[str, Counts]:
    """Every engine's counters once none has a request left (a cut stream's abort is in)."""
    deadline = time.monotonic() + 10
    while True:
        read = {mount: _engine(gw, mount) for mount in MOUNTS}
        if all(busy == 0 for _, busy in read.values()):
            return {mount: counts for mount, (counts, _) in read.items()}
        assert time.monotonic() < deadline, f"the engines never went idle: {read}"
        time.sleep(0.01)


# --- what the test sent and saw ----------------------------------------------------------


@dataclass
class Sent:
    """One request as the client saw it, and what the engines counted while it ran."""

    rid: str
    kind: str  # "answered" | "failed" | "cut"
    model: str
    endpoint: str
    stream: bool
    engine: dict[str, Counts]  # per mount: the counters' change
    status: int = 200
    error_code: str | None = None
    sdk_usage: tuple[int, int, int] | None = None  # (prompt, completion, cached)
    sdk_saw_usage_chunk: bool = False
    content_events_seen: int = 0
    prompt_estimates: tuple[int, int] = (0, 0)  # (by the tokenizer, by the body's bytes)

    @property
    def engine_total(self) -> Counts:
        return sum(self.engine.values(), Counts())


@dataclass
class Run:
    gateway: Gateway
    key_id: str
    team_id: str
    sent: list[Sent]
    records: dict[str, UsageRecord]
    engine_total: Counts
    stop_code: int | None

    def of(self, kind: str) -> list[tuple[Sent, UsageRecord]]:
        return [(s, self.records[s.rid]) for s in self.sent if s.kind == kind]


def _sdk_usage(usage: Any) -> tuple[int, int, int] | None:
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    return usage.prompt_tokens, usage.completion_tokens, cached


def _content(chunk: Any) -> str:
    """The generated text of a chat or completions stream chunk ("" for none)."""
    if not chunk.choices:
        return ""
    choice = chunk.choices[0]
    delta = getattr(choice, "delta", None)
    text = delta.content if delta is not None else getattr(choice, "text", None)
    return text or ""


class Traffic:
    """Sends requests one at a time through the SDK; reads the engines around each."""

    def __init__(self, gw: Gateway, secret: str, counter: TokenCounter) -> None:
        self.gw = gw
        self.counter = counter
        self.bodies: dict[str, bytes] = {}
        self.http = httpx2.Client(event_hooks={"request": [self._keep_body]})
        self.sdk = openai.OpenAI(base_url=gw.base_url, api_key=secret, max_retries=0,
                                 timeout=30, http_client=self.http)
        self.sent: list[Sent] = []

    def close(self) -> None:
        self.sdk.close()
        self.http.close()

    def _keep_body(self, request: httpx2.Request) -> None:
        rid = request.headers.get("x-request-id")
        if rid is not None:
            self.bodies[rid] = request.content

    def _send(self, kind: str, model: str, endpoint: str, stream: bool,
              call: Callable[[dict[str, str], Sent], None]) -> Sent:
        rid = f"metering-{uuid.uuid4().hex}"
        before = _idle_engines(self.gw)
        sent = Sent(rid, kind, model, endpoint, stream, {})
        call({"x-request-id": rid}, sent)
        after = _idle_engines(self.gw)
        sent.engine = {mount: after[mount] - before[mount] for mount in MOUNTS}
        self.sent.append(sent)
        return sent

    # answered ------------------------------------------------------------------------

    def chat(self, messages: list[dict[str, str]], **params: Any) -> Sent:
        def call(headers: dict[str, str], sent: Sent) -> None:
            reply = self.sdk.chat.completions.create(model="chat", messages=messages,
                                                     extra_headers=headers, **params)
            assert reply.choices[0].message.content
            sent.sdk_usage = _sdk_usage(reply.usage)
        return self._send("answered", "chat", "chat/completions", False, call)

    def completion(self, prompt: str, **params: Any) -> Sent:
        def call(headers: dict[str, str], sent: Sent) -> None:
            reply = self.sdk.completions.create(model="chat", prompt=prompt,
                                                extra_headers=headers, **params)
            assert reply.choices[0].text
            sent.sdk_usage = _sdk_usage(reply.usage)
        return self._send("answered", "chat", "completions", False, call)

    def chat_stream(self, messages: list[dict[str, str]], *, include_usage: bool,
                    **params: Any) -> Sent:
        def call(headers: dict[str, str], sent: Sent) -> None:
            options = {"stream_options": {"include_usage": True}} if include_usage else {}
            stream = self.sdk.chat.completions.create(model="chat", messages=messages, stream=True,
                                                      extra_headers=headers, **options, **params)
            for chunk in stream:
                sent.content_events_seen += bool(_content(chunk))
                if chunk.usage is not None:
                    sent.sdk_saw_usage_chunk = True
                    sent.sdk_usage = _sdk_usage(chunk.usage)
            assert sent.content_events_seen > 0
        return self._send("answered", "chat", "chat/completions", True, call)

    def completion_stream(self, prompt: str, **params: Any) -> Sent:
        def call(headers: dict[str, str], sent: Sent) -> None:
            stream = self.sdk.completions.create(
                model="chat", prompt=prompt, stream=True, stream_options={"include_usage": True},
                extra_headers=headers, **params)
            for chunk in stream:
                sent.content_events_seen += bool(_content(chunk))
                if chunk.usage is not None:
                    sent.sdk_saw_usage_chunk = True
                    sent.sdk_usage = _sdk_usage(chunk.usage)
        return self._send("answered", "chat", "completions", True, call)

    # failed --------------------------------------------------------------------------

    def refused(self, model: str, *, stream: bool = False, **params: Any) -> Sent:
        def call(headers: dict[str, str], sent: Sent) -> None:
            with pytest.raises(openai.APIStatusError) as info:
                self.sdk.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": f"refuse me {sent.rid}"}],
                    stream=stream, extra_headers=headers, **params)
            sent.status = info.value.status_code
            sent.error_code = info.value.code or info.value.type
        return self._send("failed", model, "chat/completions", stream, call)

    # cut off by the client -----------------------------------------------------------

    def cut_chat(self, text: str, *, after: int, include_usage: bool,
                 leave: Callable[[Any], None]) -> Sent:
        messages = [{"role": "user", "content": text}]

        def call(headers: dict[str, str], sent: Sent) -> None:
            options = {"stream_options": {"include_usage": True}} if include_usage else {}
            stream = self.sdk.chat.completions.create(
                model="chat-slow", messages=messages, stream=True, max_tokens=CUT_MAX_TOKENS,
                extra_headers=headers, **options)
            self._read_then_leave(stream, sent, after, leave)
            framing = 3 * len(messages) + 3  # metering.tokens: per message, and the reply
            by_tokenizer = self._count(text) + framing
            sent.prompt_estimates = (by_tokenizer, len(self.bodies[sent.rid]) // 3 + 1)
        return self._send("cut", "chat-slow", "chat/completions", True, call)

    def cut_completion(self, prompt: str, *, after: int, leave: Callable[[Any], None]) -> Sent:
        def call(headers: dict[str, str], sent: Sent) -> None:
            stream = self.sdk.completions.create(model="chat-slow", prompt=prompt, stream=True,
                                                 max_tokens=CUT_MAX_TOKENS, extra_headers=headers)
            self._read_then_leave(stream, sent, after, leave)
            sent.prompt_estimates = (self._count(prompt), len(self.bodies[sent.rid]) // 3 + 1)
        return self._send("cut", "chat-slow", "completions", True, call)

    @staticmethod
    def _read_then_leave(stream: Any, sent: Sent, after: int, leave: Callable[[Any], None]) -> None:
        for chunk in stream:
            sent.content_events_seen += bool(_content(chunk))
            if sent.content_events_seen == after:
                break
        assert sent.content_events_seen == after, "the stream ended before the client left"
        leave(stream)

    def _count(self, text: str) -> int:
        counted = self.counter.count(text)
        assert counted is not None
        return counted


def _close_stream(stream: Any) -> None:
    stream.close()


def _close_response(stream: Any) -> None:
    stream.response.close()


def _leave_with_block(stream: Any) -> None:
    with stream:
        pass  # what ``with client...create(stream=True) as s: ... break`` does on the way out


def _scenario(traffic: Traffic) -> None:
    user = [{"role": "user", "content": "Tell me about rivers and harbors."}]
    shared = [{"role": "system", "content": SHARED_SYSTEM}]
    # answered, non-streamed
    traffic.chat(user)
    traffic.chat([{"role": "user", "content": "Seven words, please."}], max_tokens=7)
    traffic.chat([*shared, {"role": "user", "content": "What is a prefix cache?"}])
    traffic.chat([*shared, {"role": "user", "content": "And a KV block?"}], max_tokens=12)
    traffic.completion("Once upon a time in a quiet market", max_tokens=6)
    # answered, streamed: with and without include_usage
    traffic.chat_stream([{"role": "user", "content": "Stream a story."}], include_usage=True)
    traffic.chat_stream([*shared, {"role": "user", "content": "Stream it short."}],
                        include_usage=True, max_tokens=5)
    traffic.chat_stream([{"role": "user", "content": "Stream without usage."}], include_usage=False)
    traffic.chat_stream([*shared, {"role": "user", "content": "Cached, no usage."}],
                        include_usage=False, max_tokens=9)
    traffic.completion_stream("The river moves the stone", max_tokens=8)
    # failed: refused by the gateway, and by the engine (prompt + max_tokens > 2048)
    traffic.refused("chat", temperature=5)
    traffic.refused("chat", stream=True, temperature=5)
    traffic.refused("chat-private")
    traffic.refused("chat-private", stream=True)
    traffic.refused("chat", max_tokens=2048)
    traffic.refused("chat", stream=True, max_tokens=2048)
    # cut off by the client after a few content chunks, three ways of leaving
    traffic.cut_chat("Write a very long essay about mountains.", after=1, include_usage=True,
                     leave=_close_stream)
    traffic.cut_chat("Write a very long essay about gardens.", after=3, include_usage=False,
                     leave=_close_response)
    traffic.cut_chat("Write a very long essay about planets.", after=4, include_usage=True,
                     leave=_leave_with_block)
    traffic.cut_completion("A very long essay about music begins", after=2, leave=_close_stream)


# --- the gateway, its store and its ledger -----------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    yield from store_backend(request.param, SECRET)


def _config(slow_profile: Path) -> str:
    deployments = [
        {"name": "fast", "engine": "simulator", "profile": "test-fast", "served_model": "sim-fast"},
        {"name": "slow", "engine": "simulator", "profile": str(slow_profile),
         "served_model": "sim-slow"},
    ]
    models = [{"name": "chat", "deployment": "fast", "price": PRICES["chat"]},
              {"name": "chat-slow", "deployment": "slow", "price": PRICES["chat-slow"]},
              {"name": "chat-private", "deployment": "fast", "price": PRICES["chat-private"]}]
    return platform_yaml(deployments, models)


def _slow_profile(folder: Path) -> Path:
    path = folder / "slow-profile.yaml"
    low, high = SLOW_NATURAL
    path.write_text(f"""
name: metering-slow
description: "a slow decoder, so a client leaving mid-stream is seen before the next token"
source: "synthetic, for tests"
task: generate
max_model_len: 2048
block_size: 16
kv_cache_tokens: 8192
max_num_seqs: 4
prefill_tokens_per_s: 100000
decode_step_ms_base: {STEP_MS}
prefix_cache_blocks: 1024
output_tokens_min: {low}
output_tokens_max: {high}
""", encoding="utf-8")
    return path


def _admin(gw: Gateway, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{gw.origin}/admin/api/v1{path}", method=method,
        data=None if body is None else orjson.dumps(body),
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{method} {path}: {error.code} {error.read()!r}") from None


def _team_key(gw: Gateway) -> tuple[str, str, str]:
    """A team granted ``chat`` and ``chat-slow``, a member and a key: (key id, team id, secret)."""
    team = _admin(gw, "POST", "/teams", {"name": "metering"})
    user = _admin(gw, "POST", "/users", {"email": "metering@example.com"})
    _admin(gw, "PUT", f"/teams/{team['id']}/members/{user['id']}", {"role": "member"})
    for model in ("chat", "chat-slow"):
        _admin(gw, "PUT", f"/grants/{team['id']}/{model}")
    key = _admin(gw, "POST", "/keys", {"name": "metering", "team_id": team["id"],
                                        "user_id": user["id"], "scopes": ["inference"]})
    return key["id"], team["id"], key["secret"]


def _wait_for_grants(gw: Gateway, secret: str) -> None:
    """Until the data plane's snapshot has the key and both grants."""
    deadline = time.monotonic() + READY_S
    seen: object = None
    while True:
        request = urllib.request.Request(f"{gw.base_url}/models",
                                         headers={"Authorization": f"Bearer {secret}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                seen = sorted(m["id"] for m in orjson.loads(resp.read())["data"])
        except urllib.error.HTTPError as error:
            seen = error.code
        if seen == ["chat", "chat-slow"]:
            return
        assert time.monotonic() < deadline, f"the key's grants never reached the gateway: {seen}"
        time.sleep(0.05)


def _ledger(url: str, key_id: str) -> dict[str, UsageRecord]:
    async def read() -> tuple[UsageRecord, ...]:
        db = Database(url)
        try:
            async with db.read() as tx:
                return await list_usage(tx, key_id=key_id, limit=10_000)
        finally:
            await db.close()
    records = run_sync(read())
    by_id = {r.request_id: r for r in records}
    assert len(by_id) == len(records), "a request was recorded twice"
    return by_id


@pytest.fixture(scope="module")
def metering_gateway(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp(f"metering-{store.name}")
    gw = Gateway(folder, config=_config(_slow_profile(folder)), env=store.env,
                 name=f"metering-{store.name}")
    try:
        yield gw.wait_ready()
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def run(metering_gateway: Gateway, store: Store) -> Run:
    """The whole scenario, once per store; the ledger read after a graceful stop."""
    gw = metering_gateway
    counter = TokenCounter()
    counter.load()  # the test's own o200k_base, for the gateway's documented estimate
    assert counter.ready, counter.failed
    key_id, team_id, secret = _team_key(gw)
    _wait_for_grants(gw, secret)
    started = _idle_engines(gw)
    traffic = Traffic(gw, secret, counter)
    try:
        _scenario(traffic)
    finally:
        traffic.close()
    engine_total = sum((c for c in (_idle_engines(gw)[m] - started[m] for m in MOUNTS)), Counts())
    stop_code = gw.stop()  # SIGTERM: the outbox is flushed before the process exits
    url = store.url or f"sqlite+aiosqlite:///{gw.data_dir / 'inferenceops.db'}"
    return Run(gw, key_id, team_id, traffic.sent, _ledger(url, key_id), engine_total, stop_code)


def _cost(model: str | None, prompt: int, completion: int, cached: int) -> int:
    """Nano-units: ceil of (tokens x price per million) x 1e9 / 1e6, from the YAML's decimals."""
    if model is None:
        return 0
    price = PRICES[model]
    uncached_in = Decimal(price["input_per_million"])
    cached_in = Decimal(price.get("cached_input_per_million", price["input_per_million"]))
    per_million = ((prompt - cached) * uncached_in + cached * cached_in
                   + completion * Decimal(price["output_per_million"]))
    return math.ceil(per_million * 1000)  # x 1e9 nano-units / 1e6 tokens


def _mount_of(model: str) -> str:
    return next(mount for mount, served in MOUNTS.items() if served == model)


# --- the proofs --------------------------------------------------------------------------


def test_every_request_is_recorded_once_and_a_graceful_stop_flushes_them(run: Run) -> None:
    """Settle runs for every request however it ended, and SIGTERM loses none of them."""
    assert run.stop_code in (0, -15), run.gateway.tail()
    assert set(run.records) == {s.rid for s in run.sent}
    for sent in run.sent:
        record = run.records[sent.rid]
        assert (record.key_id, record.team_id, record.endpoint) == \
            (run.key_id, run.team_id, sent.endpoint), record
        if sent.error_code != "invalid_value":  # refused while parsing: no parsed stream flag
            assert record.stream is sent.stream, record


def test_answered_requests_carry_the_tokens_the_engine_counted_and_the_sdk_was_told(
        run: Run) -> None:
    """The engine's counters, the SDK's ``usage`` (where the client asked for it) and the
    ledger agree per request and in sum; a stream that did not ask still carries usage,
    because the gateway asked the engine on its behalf and hid that chunk from the client."""
    answered = run.of("answered")
    assert len(answered) == 10
    cached_seen = 0
    for sent, record in answered:
        engine = sent.engine[_mount_of(sent.model)]
        assert sent.engine_total == engine, f"another engine worked for {sent.rid}"
        ledger = (record.prompt_tokens, record.completion_tokens, record.cached_tokens)
        assert ledger == (engine.prompt, engine.generation, engine.cache_hits), (sent, record)
        assert engine.prompt > 0 and engine.generation > 0
        if not sent.stream or sent.sdk_saw_usage_chunk:
            assert sent.sdk_usage == ledger, (sent, record)
        else:
            assert sent.sdk_usage is None  # the usage chunk the gateway asked for stayed hidden
        assert (record.model, record.deployment, record.status, record.error_code) == \
            (sent.model, "fast", 200, None), record
        cached_seen += record.cached_tokens > 0
    assert cached_seen >= 3, "the shared system prompt was never served from the engine's cache"
    streamed_without_usage = [s for s, _ in answered if s.stream and not s.sdk_saw_usage_chunk]
    assert len(streamed_without_usage) == 2
    assert sum(r.prompt_tokens for _, r in answered) == sum(s.engine_total.prompt for s, _ in answered)
    assert sum(r.completion_tokens for _, r in answered) == \
        sum(s.engine_total.generation for s, _ in answered)


def test_requests_no_engine_served_are_free_and_name_their_error(run: Run) -> None:
    """Refused by the gateway (bad parameter, model not granted) or by the engine before it
    generated anything (context too long): 0 tokens, cost 0, the status and error code the
    client got — and the engines' counters did not move."""
    failed = run.of("failed")
    # What the client got: the gateway's own errors, or the engine's body passed through
    # (the simulator's ``code`` is its HTTP status, as vLLM's is).
    assert [(s.status, s.error_code) for s, _ in failed] == [
        (400, "invalid_value"), (400, "invalid_value"),
        (404, "model_not_found"), (404, "model_not_found"),
        (400, "400"), (400, "400")]
    for sent, record in failed:
        assert sent.engine_total == Counts(), sent
        assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens,
                record.cost_nanos) == (0, 0, 0, 0), record
        by_engine = sent.error_code == "400"
        # The ledger names the gateway's class of an engine's refusal, not the engine's code.
        code = "upstream_rejected" if by_engine else sent.error_code
        assert (record.status, record.error_code) == (sent.status, code), record
        if by_engine:  # it reached the engine's deployment; the engine used nothing
            assert (record.model, record.deployment) == ("chat", "fast"), record


def test_a_stream_the_client_left_is_charged_what_the_engine_generated_before_it_left(
        run: Run) -> None:
    """One completion token per content event passed on, which is what the engine generated
    for that request (the module doc says why): at least what the client read, far below
    max_tokens and the answer's natural length; the status already sent (200) with
    ``client_disconnected``; the prompt is the gateway's documented estimate."""
    cut = run.of("cut")
    assert len(cut) == 4
    tokenizer_loaded = False
    estimated_by = []
    for sent, record in cut:
        engine = sent.engine[_mount_of(sent.model)]
        assert sent.engine_total == engine, f"another engine worked for {sent.rid}"
        counts = (f"client read {sent.content_events_seen}, ledger {record.completion_tokens}, "
                  f"engine generated {engine.generation}")
        assert record.completion_tokens == engine.generation, counts
        assert sent.content_events_seen <= record.completion_tokens < SLOW_NATURAL[0], counts
        assert record.completion_tokens < CUT_MAX_TOKENS
        assert (record.status, record.error_code, record.stream) == \
            (200, "client_disconnected", True), record
        assert (record.model, record.deployment) == ("chat-slow", "slow"), record
        by_tokenizer, by_bytes = sent.prompt_estimates
        assert by_tokenizer != by_bytes  # so the record shows which estimate it is
        assert record.prompt_tokens in sent.prompt_estimates, (sent.prompt_estimates, record)
        assert record.cached_tokens == 0
        if record.prompt_tokens == by_tokenizer:
            tokenizer_loaded = True
        else:
            assert not tokenizer_loaded, "the gateway's tokenizer was loaded, then not"
        estimated_by.append("tokenizer" if tokenizer_loaded else "bytes")
    print(f"cut streams' prompts estimated by: {estimated_by}")


def test_every_record_costs_its_tokens_at_the_models_price(run: Run) -> None:
    """Cost is computed here from the YAML's decimal prices, rounded up once per request."""
    assert run.records
    rounded = 0
    for record in run.records.values():
        expected = _cost(record.model, record.prompt_tokens, record.completion_tokens,
                         record.cached_tokens)
        assert record.cost_nanos == expected, record
        if record.model is not None and expected != _cost_exact(record):
            rounded += 1
    assert rounded > 0, "no cost needed rounding: the prices do not test it"
    assert sum(r.cost_nanos > 0 for r in run.records.values()) == 14  # answered + cut


def _cost_exact(record: UsageRecord) -> Decimal:
    assert record.model is not None
    price = PRICES[record.model]
    cached_in = Decimal(price.get("cached_input_per_million", price["input_per_million"]))
    return ((record.prompt_tokens - record.cached_tokens) * Decimal(price["input_per_million"])
            + record.cached_tokens * cached_in
            + record.completion_tokens * Decimal(price["output_per_million"])) * 1000


def test_tokens_reported_is_false_exactly_for_the_streams_the_client_cut_off(run: Run) -> None:
    """The engine reported usage for every answered request (streamed ones too); a request
    no engine served used nothing, which is known, not estimated; only a cut stream's tokens
    are the gateway's own count."""
    for sent in run.sent:
        assert run.records[sent.rid].tokens_reported is (sent.kind != "cut"), sent


def test_the_ledger_adds_up_to_the_engines_counters(run: Run) -> None:
    """Over the whole run: every token the engines generated is in the ledger, none more;
    every prompt token they processed is in the ledger as reported, except cut streams'
    (estimated there, counted by the engine)."""
    records = run.records.values()
    assert sum(r.completion_tokens for r in records) == run.engine_total.generation
    reported_prompts = sum(r.prompt_tokens for r in records if r.tokens_reported)
    cut_prompts = sum(s.engine_total.prompt for s in run.sent if s.kind == "cut")
    assert reported_prompts + cut_prompts == run.engine_total.prompt
    assert sum(s.engine_total.prompt for s in run.sent) == run.engine_total.prompt
