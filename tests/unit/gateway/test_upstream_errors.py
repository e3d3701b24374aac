"""What a caller sees when an engine misbehaves, through the real data-plane handler.

Engines echo credentials, crash with tracebacks, rate-limit, redirect, answer
garbage or far too much, or run out of time mid-stream. Tenants must see a
clear OpenAI error with the request id and nothing of the platform's secrets
or internals; platform admins also see what the engine said; the log has it
under the request id; and a request whose answer was no answer is never charged.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tests.support.asgi import Response, request
from tests.support.fake_upstream import INTERNAL_HOST, OTHER_BEARER, FakeUpstream
from tests.unit.conftest import TEST_SECRET, Harness, make_harness

from inferenceops.admission.control import AdmissionControl
from inferenceops.admission.ledger import Check, CheckKind
from inferenceops.admission.memory_ledger import MemoryLedger
from inferenceops.admission.plan import budget_checks
from inferenceops.engines.redaction import Redactor
from inferenceops.engines.upstream_errors import http_error
from inferenceops.error_shape import error_json, sse_error_event
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.request import parse_inference
from inferenceops.pipeline.upstream_failure import tell
from inferenceops.platform import ApiKey, Endpoint, Identity, KeyHasher, Principal, Snapshot
from inferenceops.platform.identity import PLATFORM_ADMIN
from inferenceops.platform.policy import (
    Budget,
    BudgetRule,
    LimitRule,
    Period,
    Policy,
    Price,
    RateLimit,
    Scope,
)

UPSTREAM_KEY = "sk-upstream-secret"  # what tests/unit/conftest.py gives the fake deployment
TENANT_KEY, PLATFORM_KEY = "sk-io-tenant-key", "sk-io-platform-key"
HASHER = KeyHasher(TEST_SECRET.encode())
BEHAVIOURS = ("echo-auth-401", "echo-auth-422", "echo-auth-stream", "traceback-500", "redirect",
              "bad-json", "not-json", "huge", "rate-limited", "error-429", "ok")
SLOTS = Check(CheckKind.CONCURRENCY, "con:team:team_ml", 100, 0, "concurrency")


def identity() -> Identity:
    tenant = ApiKey("key_tenant", "sk-io-te", Principal("usr_1"), "team_ml",
                    frozenset({"inference", "admin"}))  # a team admin is still a tenant
    admin = ApiKey("key_platform", "sk-io-pl", Principal("usr_0", platform_role=PLATFORM_ADMIN),
                   None, frozenset({"inference", "admin"}))
    return Identity([(HASHER.digest(TENANT_KEY), tenant), (HASHER.digest(PLATFORM_KEY), admin)],
                    {"team_ml": BEHAVIOURS})


def platform(port: int) -> str:
    deployments = "".join(
        f"  - name: d-{b}\n    engine: openai\n    served_model: {b}\n"
        f"    api_key_env: FAKE_UPSTREAM_KEY\n    replicas:\n"
        f"      - url: http://127.0.0.1:{port}/v1\n"
        f"    timeouts: {{first_byte_s: 5, between_chunks_s: 5, total_s: 0.4}}\n"
        for b in BEHAVIOURS)
    models = "".join(f"  - {{name: {b}, deployment: d-{b}}}\n" for b in BEHAVIOURS)
    return f"deployments:\n{deployments}models:\n{models}"


@pytest.fixture
async def gateway(fake: tuple[FakeUpstream, int]) -> AsyncIterator[Harness]:
    upstream, port = fake
    h = await make_harness(platform(port), upstream, port, max_response_bytes=64 * 1024)
    state = h.app.state
    assert state.admission is not None
    await state.admission.ledger.close()
    state.admission = AdmissionControl(MemoryLedger())
    state.snapshot = Snapshot(state.snapshot.catalog, identity(), POLICY)
    yield h
    await state.stop()


UNIT = 1000
POLICY = Policy(
    budgets=[BudgetRule(Scope.TEAM, "team_ml", Budget(10**15, Period.MONTHLY))],
    limits=[LimitRule(Scope.TEAM, "team_ml", RateLimit(tpm=10**9, concurrency=100))],
    prices={b: Price.per_token(input=UNIT, output=10 * UNIT) for b in BEHAVIOURS})


async def chat(h: Harness, model: str, key: str = TENANT_KEY, stream: bool = False,
               request_id: str = "req-under-test") -> Response:
    doc = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50,
           "stream": stream}
    return await request(h.app, "POST", "/v1/chat/completions", body=orjson.dumps(doc),
                         headers={"Authorization": f"Bearer {key}", "x-request-id": request_id})


def assert_no_secret(raw: bytes) -> None:
    for secret in (UPSTREAM_KEY, OTHER_BEARER.removeprefix("Bearer ")):
        assert secret.encode() not in raw, raw


async def spent_and_reserved(h: Harness) -> tuple[int, int, int]:
    ledger = h.app.state.admission.ledger  # type: ignore[union-attr]
    checks: list[Check] = []
    key = h.app.state.snapshot.identity.key(HASHER.digest(TENANT_KEY))
    assert key is not None
    budget_checks(checks, POLICY, key, 0, time.time())
    spent, reserved = await ledger.budget_totals(checks[0].counter)
    (slots,) = await ledger.read([SLOTS])
    return spent, reserved, slots.used


# --- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "stream"), [("echo-auth-401", False), ("echo-auth-401", True),
                                               ("echo-auth-422", False)])
async def test_a_4xx_echoing_the_provider_key_reaches_the_client_redacted(
        gateway: Harness, model: str, stream: bool) -> None:
    resp = await chat(gateway, model, stream=stream)
    assert resp.status == int(model.rsplit("-", 1)[1])
    assert_no_secret(resp.body)
    error = resp.json()["error"]
    assert error["message"] == ("invalid header Authorization: Bearer [REDACTED]; "
                                "x-other: Bearer [REDACTED]")
    assert (error["type"], error["param"], error["code"]) == \
        ("invalid_request_error", "[REDACTED]", "bad_auth")
    assert error["request_id"] == "req-under-test"


async def test_an_error_event_inside_a_stream_reaches_the_client_redacted(
        gateway: Harness) -> None:
    resp = await chat(gateway, "echo-auth-stream", stream=True)
    assert resp.status == 200
    assert_no_secret(resp.body)
    events = [e for e in resp.body.split(b"\n\n") if e]
    assert orjson.loads(events[0][6:])["choices"][0]["delta"]["content"] == "t0 "
    assert orjson.loads(events[1][6:])["error"]["message"] == \
        "upstream auth failed for Authorization: Bearer [REDACTED] (Bearer [REDACTED])"


# --- what tenants and admins see of an engine's failure -----------------------------------


async def test_a_5xx_traceback_is_hidden_from_tenants_logged_and_shown_to_platform_admins(
        gateway: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="inferenceops.gateway.upstream")
    tenant = await chat(gateway, "traceback-500", request_id="req-tenant-500")
    assert tenant.status == 502
    assert tenant.headers["x-request-id"] == "req-tenant-500"
    for hidden in (b"Traceback", b"/opt/llama_cpp", INTERNAL_HOST.encode(), b"upstream\""):
        assert hidden not in tenant.body
    error = tenant.json()["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_server_error")
    assert error["request_id"] == "req-tenant-500" and "request's id" in error["message"]
    logged = [r.getMessage() for r in caplog.records if "req-tenant-500" in r.getMessage()]
    assert len(logged) == 1
    assert "Traceback" in logged[0] and INTERNAL_HOST in logged[0] and "d-traceback-500" in logged[0]
    assert UPSTREAM_KEY not in logged[0]

    admin = await chat(gateway, "traceback-500", key=PLATFORM_KEY)
    upstream = admin.json()["error"]["upstream"]
    assert upstream["status"] == 500 and INTERNAL_HOST in upstream["message"]
    assert_no_secret(admin.body)


async def test_a_stream_cut_by_total_s_says_so(gateway: Harness) -> None:
    upstream: FakeUpstream = gateway.fake
    upstream.stream_chunks, upstream.chunk_delay_s = 1000, 0.05
    resp = await chat(gateway, "ok", stream=True)
    assert resp.status == 200
    last = orjson.loads(resp.body.rstrip(b"\n").rsplit(b"\n\n", 1)[1][6:])["error"]
    assert last["code"] == "upstream_timeout"
    assert last["message"] == "deployment 'd-ok' did not finish the stream within its total " \
                              "timeout of 0.4s"
    assert last["request_id"] == "req-under-test" and "upstream" not in last


# --- answers that are not answers ---------------------------------------------------------


@pytest.mark.parametrize(("model", "retry_after"), [("rate-limited", "7"), ("error-429", "1")])
async def test_an_upstream_429_reaches_the_client_with_retry_after(
        gateway: Harness, model: str, retry_after: str) -> None:
    resp = await chat(gateway, model)
    assert resp.status == 429
    assert resp.headers["retry-after"] == retry_after
    assert resp.json()["error"]["message"].startswith(("slow down", "upstream says 429"))


@pytest.mark.parametrize(("model", "stream"), [("redirect", False), ("redirect", True),
                                               ("bad-json", False), ("not-json", False),
                                               ("huge", False)])
async def test_an_answer_that_is_not_one_is_a_502_and_nothing_is_charged(
        gateway: Harness, model: str, stream: bool) -> None:
    resp = await chat(gateway, model, stream=stream)
    assert resp.status == 502
    error = resp.json()["error"]
    assert error["type"] == "upstream_error"
    assert error["code"] == ("upstream_response_too_large" if model == "huge"
                             else "upstream_invalid_response")
    assert INTERNAL_HOST.encode() not in resp.body and b"nginx" not in resp.body
    assert await spent_and_reserved(gateway) == (0, 0, 0)
    ok = await chat(gateway, "ok")  # the same ledger does charge a real answer
    assert ok.status == 200
    spent, reserved, slots = await spent_and_reserved(gateway)
    assert (spent, reserved, slots) == (3 * UNIT + 1 * 10 * UNIT, 0, 0)


async def test_an_answer_past_the_limit_is_cut_without_being_read_whole(
        gateway: Harness) -> None:
    upstream: FakeUpstream = gateway.fake
    upstream.huge_bytes = 256 * 1024 * 1024
    resp = await chat(gateway, "huge")
    assert resp.status == 502
    assert "65536 bytes" in resp.json()["error"]["message"]
    await upstream.huge_done.wait()
    assert not upstream.huge_completed
    assert upstream.huge_sent < upstream.huge_bytes // 4


# --- the whole class of the leak ----------------------------------------------------------

# Provider keys as operators paste them: token characters, and characters JSON may write
# escaped ("/" as \/, anything as \uXXXX, past the BMP as a surrogate pair). Left out: the
# backslash (it would make "the key, JSON-escaped" ambiguous) and JSON's own '"' and ':' (a
# fragment of a key split across fields, then JSON's punctuation, could spell such a key).
# No provider issues keys with them.
KEY_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                            "-_.~+/=' éß中😀")
KEYS = st.text(KEY_CHARS, min_size=12, max_size=48)
FILLER = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def _escape(key: str, picks: list[bool]) -> str:
    """``key`` as it would sit inside a JSON string, some characters \\u-escaped."""
    out = []
    for char, pick in zip(key, picks + [False] * len(key), strict=False):
        if pick or char in '"\\' or ord(char) < 0x20:
            data = char.encode("utf-16-be")
            out.append("".join(f"\\u{int.from_bytes(data[i:i + 2], 'big'):04x}"
                               for i in range(0, len(data), 2)))
        else:
            out.append(char)
    return "".join(out)


@st.composite
def leaking_bodies(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    """(key, an upstream error body that embeds it, whether the body arrived whole)."""
    key = draw(KEYS)
    fields = ("message", "type", "param", "code", "detail")
    whole_in = draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True))
    split_at = draw(st.integers(1, len(key) - 1))
    values = {f: draw(FILLER) for f in fields}
    for f in whole_in:  # the key at an arbitrary position of some fields...
        at = draw(st.integers(0, len(values[f])))
        values[f] = values[f][:at] + draw(st.sampled_from(["", "Bearer ", "Authorization: ", "\\"])) \
            + key + values[f][at:]
    values["type"] += key[:split_at]  # ...and split across two others
    values["param"] = key[split_at:] + values["param"]
    picks = draw(st.lists(st.booleans(), max_size=len(key)))
    shape = draw(st.sampled_from(["openai", "detail", "string", "text", "escaped-text"]))
    if shape == "openai":
        raw = orjson.dumps({"error": {f: values[f] for f in fields[:4]}, "detail": values["detail"]})
        if any(picks):  # the same document, with the key's characters \u-escaped in place
            raw = raw.replace(orjson.dumps(key)[1:-1], _escape(key, picks).encode())
    elif shape == "detail":
        raw = orjson.dumps({"detail": values["detail"] + values["message"]})
    elif shape == "string":
        raw = orjson.dumps({"error": values["message"]})
    elif shape == "text":
        raw = " | ".join(values.values()).encode()
    else:
        raw = " | ".join(values.values()).replace(key, _escape(key, picks)).encode()
    whole = draw(st.booleans())
    if not whole:
        raw = raw[:draw(st.integers(0, len(raw)))]
    return key, raw, whole


def _unescaped(text: str) -> str:
    """``text`` read as the inside of a JSON string: what anyone can recover from it."""
    decoded = re.sub(r'\\(u[0-9a-fA-F]{4}|["\\/bfnrt])',
                     lambda m: json.loads(f'"\\{m.group(1)}"'), text)
    return decoded.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(leaking_bodies(), st.sampled_from([400, 401, 403, 404, 422, 429, 500, 502, 503]),
       st.booleans())
def test_no_upstream_error_body_ever_shows_the_provider_key(
        leak: tuple[str, bytes, bool], status: int, admin: bool) -> None:
    key, body, whole = leak
    # A generated key that is a word of the gateway's own answer ("upstream_rej…") is not one
    # that could leak: real keys are random.
    bare = http_error(status, b"", complete=True, deployment="d", retry_after=None,
                      redactor=Redactor([]))
    assume(key.encode() not in error_json(bare) + sse_error_event(bare))
    exc = http_error(status, body, complete=whole, deployment="d", retry_after=None,
                     redactor=Redactor(["sk-another-deployments-key", key]))
    tell(exc, RequestFacts.from_headers([]), "d-0", reveal=admin)
    for shown in (error_json(exc), sse_error_event(exc)):
        assert key.encode() not in shown
        assert orjson.dumps(key)[1:-1] not in shown
        for text in _strings(orjson.loads(shown.removeprefix(b"data: "))):
            assert key not in text and key not in _unescaped(text)


#: Marked, so that a prompt never happens to be a word of the log line's own text.
_PROMPTS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=80
                   ).map(lambda t: "prompt:" + t)


@settings(max_examples=200, deadline=None)
@given(prompt=_PROMPTS, as_json=st.booleans(), status=st.sampled_from([500, 502, 503]))
def test_an_engine_error_quoting_the_prompt_is_logged_without_it(
        prompt: str, as_json: bool, status: int) -> None:
    """Bodies are never stored, logs included: the prompt an engine quotes (as sent, or in the
    JSON body it echoes) is cut from the logged error."""
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}]})
    facts = RequestFacts.for_call(Endpoint.CHAT, body, api_key="k")
    facts.request = parse_inference(body, Endpoint.CHAT, 1000)
    quoted = body.decode() if as_json else prompt
    exc = http_error(status, orjson.dumps({"error": {"message": f"cannot run {quoted}"}}),
                     complete=True, deployment="d", retry_after=None, redactor=Redactor([]))
    handler = _Capture()
    logger = logging.getLogger("inferenceops.gateway.upstream")
    logger.addHandler(handler)
    try:
        tell(exc, facts, "d-0", reveal=False)
    finally:
        logger.removeHandler(handler)
    (line,) = handler.lines
    assert "[prompt]" in line
    assert prompt not in line and orjson.dumps(prompt).decode()[1:-1] not in line


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
