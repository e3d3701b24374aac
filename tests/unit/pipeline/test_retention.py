"""Body retention on the data plane, through the real pipeline and handler (a fake engine
behind): a team that stores bodies gets its request and its answer — whole or streamed, as
the caller got them — queued for the writer, which redacts them; every other team gets
nothing queued; a zero-retention team's engine failure is logged without its detail."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson
import pytest
from tests.support.asgi import request
from tests.support.fake_upstream import FakeUpstream
from tests.unit.conftest import TEST_SECRET, Harness, make_harness, platform_yaml

from inferenceops.outbox.records import BodyRecord
from inferenceops.outbox.writer import body_row
from inferenceops.platform import ApiKey, Identity, KeyHasher, Principal, Snapshot
from inferenceops.platform.policy import Policy
from inferenceops.platform.retention import Retention

HASHER = KeyHasher(TEST_SECRET.encode())
KEEP, ZERO, PLAIN = "sk-io-keeper-key", "sk-io-zero-key", "sk-io-plain-key"
BROKEN = """
  - name: broken
    engine: openai
    served_model: echo-prompt-500
    api_key_env: FAKE_UPSTREAM_KEY
    replicas:
      - url: http://127.0.0.1:{port}/v1
"""


def _key(secret: str, key_id: str, team: str) -> tuple[bytes, ApiKey]:
    return HASHER.digest(secret), ApiKey(key_id, secret[:8], Principal("usr_" + team), team,
                                         frozenset({"inference"}))


@pytest.fixture
async def kept(fake: tuple[FakeUpstream, int]) -> AsyncIterator[Harness]:
    upstream, port = fake
    text = platform_yaml(port, BROKEN.format(port=port)) + "  - {name: broken, deployment: broken}\n"
    h = await make_harness(text, upstream, port)
    teams = {"team_keep": ("chat-model", "broken"), "team_zero": ("chat-model", "broken"),
             "team_plain": ("chat-model", "broken")}
    identity = Identity([_key(KEEP, "key_keep", "team_keep"), _key(ZERO, "key_zero", "team_zero"),
                         _key(PLAIN, "key_plain", "team_plain")], teams)
    policy = Policy(retention={"team_keep": Retention("store", 7), "team_zero": Retention("zero")})
    state = h.app.state
    state.snapshot = Snapshot(state.snapshot.catalog, identity, policy)
    yield h
    await state.stop()


def chat(content: str, **extra: object) -> bytes:
    return orjson.dumps({"model": "chat-model", "messages": [{"role": "user", "content": content}],
                         **extra})


def bodies(h: Harness) -> list[BodyRecord]:
    taken, _ = h.app.state.outbox.take(10_000)
    return [r for r in taken if isinstance(r, BodyRecord)]


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_a_team_that_keeps_bodies_has_a_whole_answer_queued_and_stored_redacted(
        kept: Harness) -> None:
    kept.fake.answer_text = "noted, I will write to carol@example.org"
    reply = await request(kept.app, "POST", "/v1/chat/completions",
                          body=chat("mail anna@example.com the plan"), headers=auth(KEEP))
    assert reply.status == 200, reply.body
    (record,) = bodies(kept)
    assert (record.team_id, record.key_id, record.model, record.stream, record.status,
            record.days, record.truncated) == ("team_keep", "key_keep", "chat-model", False, 200,
                                               7, False)
    assert b"anna@example.com" in record.request  # queued as it passed: the writer redacts
    row = body_row(record)
    assert "anna@example.com" not in row["request"] and "carol@example.org" not in row["response"]
    sent = orjson.loads(row["request"])["messages"][0]["content"]
    answered = orjson.loads(row["response"])["choices"][0]["message"]["content"]
    assert (sent, answered) == ("mail [EMAIL] the plan", "noted, I will write to [EMAIL]")
    assert row["expires_at"] - row["at"] == __import__("datetime").timedelta(days=7)


async def test_a_streamed_answer_is_kept_as_the_caller_got_it_as_text(kept: Harness) -> None:
    kept.fake.answer_text = "call 10.1.2.3 today"
    reply = await request(kept.app, "POST", "/v1/chat/completions",
                          body=chat("hi", stream=True), headers=auth(KEEP))
    assert reply.status == 200
    (record,) = bodies(kept)
    assert record.stream and record.response is not None and b"data:" in record.response
    row = body_row(record)
    assert orjson.loads(row["response"]) == {"object": "stream", "truncated": False, "choices": [
        {"index": 0, "text": "call [IP_ADDRESS] today"}]}


async def test_teams_that_do_not_keep_bodies_have_nothing_queued(kept: Harness) -> None:
    for secret in (ZERO, PLAIN):
        for stream in (False, True):
            reply = await request(kept.app, "POST", "/v1/chat/completions",
                                  body=chat("hello", stream=stream), headers=auth(secret))
            assert reply.status == 200
    assert bodies(kept) == []


async def test_each_side_is_cut_at_the_configured_size_and_marked(kept: Harness) -> None:
    kept.app.state.pipeline.retained_body_max_bytes = 64
    kept.fake.answer_text = "word " * 50
    await request(kept.app, "POST", "/v1/chat/completions", body=chat("x" * 200), headers=auth(KEEP))
    await request(kept.app, "POST", "/v1/chat/completions", body=chat("y", stream=True),
                  headers=auth(KEEP))
    whole, streamed = bodies(kept)
    assert whole.truncated and len(whole.request) == 64 and whole.response is not None \
        and len(whole.response) == 64
    assert streamed.truncated and streamed.response is not None and len(streamed.response) == 64
    assert body_row(whole)["truncated"] and body_row(streamed)["truncated"]


async def test_a_zero_retention_teams_engine_failure_is_logged_without_its_detail(
        kept: Harness, caplog: pytest.LogCaptureFixture) -> None:
    marker = "user-marker-0f3c"  # not prompt text: an ordinary team's log keeps it (the echo)
    body = orjson.dumps({"model": "broken", "messages": [{"role": "user", "content": "hi"}],
                         "user": marker})
    with caplog.at_level(logging.WARNING, logger="inferenceops"):
        plain = await request(kept.app, "POST", "/v1/chat/completions", body=body,
                              headers=auth(PLAIN))
        ordinary = caplog.text
        caplog.clear()
        zero = await request(kept.app, "POST", "/v1/chat/completions", body=body,
                             headers=auth(ZERO))
    assert plain.status == zero.status == 502
    assert "cannot generate for request" in ordinary and marker in ordinary
    assert "zero-retention" in caplog.text
    assert marker not in caplog.text and "cannot generate" not in caplog.text
    assert bodies(kept) == []
