"""The engine client: follows catalog changes without dropping warm pools it can keep, and
turns every answer that is not one (errors, redirects, bodies that are not JSON or too large,
streams out of time) into typed errors that carry no secret and no address."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from email.utils import formatdate

import orjson
import pytest
from tests.support import fake_upstream
from tests.support.fake_upstream import INTERNAL_HOST, FakeUpstream

from inferenceops.engines.openai_compat import OpenAICompatClient, UpstreamAnswer
from inferenceops.engines.upstream_errors import retry_after_value
from inferenceops.errors import (
    UpstreamClientError,
    UpstreamConnectFailed,
    UpstreamInvalidResponse,
    UpstreamRateLimited,
    UpstreamResponseTooLarge,
    UpstreamServerError,
    UpstreamTimeout,
)
from inferenceops.platform import Deployment, Replica
from inferenceops.platform.catalog import Timeouts
from inferenceops.settings import Settings

BODY = b'{"model": "ok", "messages": [{"role": "user", "content": "hi"}]}'
MAX_RESPONSE_BYTES: int = Settings.model_fields["max_response_bytes"].default


@pytest.fixture
async def two_engines() -> AsyncIterator[tuple[FakeUpstream, str, FakeUpstream, str]]:
    first, second = FakeUpstream(), FakeUpstream()
    runner_a, port_a = await fake_upstream.start(first)
    runner_b, port_b = await fake_upstream.start(second)
    yield first, f"http://127.0.0.1:{port_a}/v1", second, f"http://127.0.0.1:{port_b}/v1"
    await runner_a.cleanup()
    await runner_b.cleanup()


def deployment(url: str, api_key: str | None = None, name: str = "d") -> Deployment:
    return Deployment(name, "openai", "ok", (Replica(f"{name}-0", url),), api_key=api_key)


async def test_sync_keeps_unchanged_pools_and_replaces_moved_ones(two_engines) -> None:  # type: ignore[no-untyped-def]
    first, url_a, second, url_b = two_engines
    before = deployment(url_a)
    client = OpenAICompatClient([before], max_response_bytes=MAX_RESPONSE_BYTES)
    await client.start()
    try:
        status, *_ = await client.complete(before, before.replicas[0], "chat/completions", BODY)
        assert status == 200 and len(first.requests) == 1
        pool = client._pools["d-0"]
        client.sync([deployment(url_a, api_key="sk-new")])
        assert client._pools["d-0"] is pool  # same address: the warm pool stays
        await client.complete(before, before.replicas[0], "chat/completions", BODY)
        assert first.requests[-1].headers["Authorization"] == "Bearer sk-new"
        moved = deployment(url_b)
        client.sync([moved])
        assert client._pools["d-0"] is not pool
        await client.complete(moved, moved.replicas[0], "chat/completions", BODY)
        assert len(second.requests) == 1
    finally:
        await client.close()


async def test_a_request_for_a_removed_replica_fails_as_never_sent(two_engines) -> None:  # type: ignore[no-untyped-def]
    _, url_a, _, _ = two_engines
    old = deployment(url_a)
    client = OpenAICompatClient([old], max_response_bytes=MAX_RESPONSE_BYTES)
    await client.start()
    try:
        client.sync([])
        with pytest.raises(UpstreamConnectFailed, match="removed"):
            await client.complete(old, old.replicas[0], "chat/completions", BODY)
    finally:
        await client.close()


# --- answers that are not what they claim -------------------------------------------------

SECRET = "sk-upstream-provider-key-0123456789"
DEFAULT_TIMEOUTS = Timeouts()


@pytest.fixture
async def engine() -> AsyncIterator[tuple[FakeUpstream, str]]:
    upstream = FakeUpstream()
    runner, port = await fake_upstream.start(upstream)
    yield upstream, f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def call(url: str, model: str, *, stream: bool = False,
               max_response_bytes: int = MAX_RESPONSE_BYTES,
               timeouts: Timeouts = DEFAULT_TIMEOUTS) -> object:
    d = Deployment("d", "openai", model, (Replica("d-0", url),), api_key=SECRET,
                   timeouts=timeouts)
    client = OpenAICompatClient([d], max_response_bytes=max_response_bytes)
    await client.start()
    body = orjson.dumps({"model": model, "messages": [], "stream": stream})
    try:
        if stream:
            upstream = await client.open_stream(d, d.replicas[0], "chat/completions", body)
            chunks = []
            while chunk := await upstream.next_chunk():
                chunks.append(chunk)
            return b"".join(chunks)
        return await client.complete(d, d.replicas[0], "chat/completions", body)
    finally:
        await client.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_4xx_that_echoes_the_key_keeps_its_words_but_not_the_key(
        engine: tuple[FakeUpstream, str], stream: bool) -> None:
    _, url = engine
    with pytest.raises(UpstreamClientError) as info:
        await call(url, "echo-auth-401", stream=stream)
    exc = info.value
    assert exc.status == 401
    assert exc.message == ("invalid header Authorization: Bearer [REDACTED]; "
                           "x-other: Bearer [REDACTED]")
    assert exc.body == {"error": {"message": exc.message, "type": "invalid_request_error",
                                  "param": "[REDACTED]", "code": "bad_auth"}}


async def test_a_5xx_traceback_is_kept_as_redacted_detail_never_in_the_message(
        engine: tuple[FakeUpstream, str]) -> None:
    _, url = engine
    with pytest.raises(UpstreamServerError) as info:
        await call(url, "traceback-500")
    exc = info.value
    assert "Traceback" not in exc.message and INTERNAL_HOST not in exc.message
    assert exc.message.startswith("The engine serving deployment 'd' failed (HTTP 500).")
    assert exc.detail is not None and exc.detail["status"] == 500
    said = exc.detail["message"]
    assert said.startswith("Traceback (most recent call last):") and INTERNAL_HOST in said
    assert SECRET not in said and "Authorization: Bearer [REDACTED]" in said
    assert "upstream" not in exc.extra  # only the forwarder decides who sees it


@pytest.mark.parametrize(("model", "retry_after"), [("rate-limited", "7"), ("error-429", "1")])
async def test_an_upstream_429_says_when_to_retry(engine: tuple[FakeUpstream, str], model: str,
                                                  retry_after: str) -> None:
    _, url = engine
    with pytest.raises(UpstreamRateLimited) as info:
        await call(url, model)
    assert info.value.status == 429
    assert info.value.headers == {"Retry-After": retry_after}


@pytest.mark.parametrize("value", [b"120", b" 5 ", b"999999999999"])
def test_retry_after_in_seconds_is_kept_up_to_a_day(value: bytes) -> None:
    assert retry_after_value(value) == str(min(int(value), 86_400))


def test_retry_after_as_a_date_becomes_seconds_and_nonsense_the_default() -> None:
    later = formatdate(time.time() + 90, usegmt=True).encode()
    assert 85 <= int(retry_after_value(later)) <= 91
    assert retry_after_value(formatdate(0, usegmt=True).encode()) == "0"
    for nonsense in (None, b"", b"soon", b"\xb2", b"-3"):
        assert retry_after_value(nonsense) == "1"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_redirect_is_an_invalid_answer_that_names_no_host(
        engine: tuple[FakeUpstream, str], stream: bool) -> None:
    _, url = engine
    with pytest.raises(UpstreamInvalidResponse) as info:
        await call(url, "redirect", stream=stream)
    assert "HTTP 302" in info.value.message and INTERNAL_HOST not in str(info.value.__dict__)


@pytest.mark.parametrize("model", ["bad-json", "not-json"])
async def test_a_200_that_is_not_a_json_object_is_an_invalid_answer(
        engine: tuple[FakeUpstream, str], model: str) -> None:
    _, url = engine
    with pytest.raises(UpstreamInvalidResponse) as info:
        await call(url, model)
    assert info.value.code == "upstream_invalid_response" and info.value.status == 502


async def test_an_answer_past_the_limit_is_cut_without_being_read_whole(
        engine: tuple[FakeUpstream, str]) -> None:
    upstream, url = engine
    upstream.huge_bytes = 256 * 1024 * 1024
    with pytest.raises(UpstreamResponseTooLarge) as info:
        await call(url, "huge", max_response_bytes=64 * 1024)
    assert info.value.status == 502 and "65536 bytes" in info.value.message
    await upstream.huge_done.wait()  # the engine noticed the dropped connection
    assert not upstream.huge_completed
    assert upstream.huge_sent < upstream.huge_bytes // 4


async def test_an_answer_at_the_limit_is_served(engine: tuple[FakeUpstream, str]) -> None:
    _, url = engine
    whole = await call(url, "ok")
    assert isinstance(whole, UpstreamAnswer)
    answer = await call(url, "ok", max_response_bytes=len(whole.body))
    assert isinstance(answer, UpstreamAnswer) and answer.doc["choices"]
    with pytest.raises(UpstreamResponseTooLarge):
        await call(url, "ok", max_response_bytes=len(whole.body) - 1)


@pytest.mark.parametrize(("timeouts", "message"), [
    ({"total_s": 0.3, "between_chunks_s": 30}, "did not finish the stream within its total "
                                               "timeout of 0.3s"),
    ({"total_s": 30, "between_chunks_s": 0.3}, "sent nothing for 0.3s mid-stream"),
])
async def test_a_stream_timeout_says_which_clock_ran_out(
        engine: tuple[FakeUpstream, str], timeouts: dict[str, float], message: str) -> None:
    upstream, url = engine
    upstream.stream_chunks, upstream.chunk_delay_s = 1000, 0.05
    model = "stall" if timeouts["between_chunks_s"] < 1 else "ok"
    with pytest.raises(UpstreamTimeout) as info:
        await call(url, model, stream=True, timeouts=Timeouts(**timeouts))
    assert info.value.message == f"deployment 'd' {message}"


async def test_a_refused_connection_names_no_address(engine: tuple[FakeUpstream, str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UpstreamConnectFailed) as info:
        await call(f"http://127.0.0.1:{port}/v1", "ok")
    assert info.value.message == "deployment 'd' is unreachable (connection refused)"
