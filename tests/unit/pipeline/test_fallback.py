"""Canary splits and fallback chains through the real pipeline and handler (a fake engine
behind): a request goes on down the chain only when no engine started on it, a fallback to
another model only for a key granted it, and the usage record names what served it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from tests.support.asgi import request
from tests.support.fake_upstream import FakeUpstream
from tests.unit.conftest import TEST_SECRET, Harness, make_harness

from inferenceops.outbox import UsageRecord
from inferenceops.platform import ApiKey, Identity, KeyHasher, Principal, Snapshot
from inferenceops.routing.retry import RetryPolicy

HASHER = KeyHasher(TEST_SECRET.encode())
GRANTED, NARROW = "sk-io-granted-key", "sk-io-narrow-key"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def platform(port: int, dead: int) -> str:
    def deployment(name: str, served: str, at: int) -> str:
        return (f"  - name: {name}\n    engine: openai\n    served_model: {served}\n"
                f"    replicas:\n      - url: http://127.0.0.1:{at}/v1\n"
                f"    timeouts: {{connect_s: 0.5, first_byte_s: 2, total_s: 5}}\n")
    return ("deployments:\n"
            + deployment("down", "ok", dead) + deployment("busy", "error-503", port)
            + deployment("broken", "error-500", port) + deployment("crashing", "crash", port)
            + deployment("backup", "ok", port) + deployment("other", "ok", port)
            + deployment("next", "ok", port)
            + """models:
  - {name: chat, deployment: down, fallbacks: [{deployment: backup}]}
  - {name: busy-chat, deployment: busy, fallbacks: [{deployment: backup}]}
  - {name: broken-chat, deployment: broken, fallbacks: [{deployment: backup}]}
  - {name: crashing-chat, deployment: crashing, fallbacks: [{deployment: backup}]}
  - {name: to-model, deployment: down, fallbacks: [{model: premium}]}
  - {name: premium, deployment: other}
  - {name: canary, deployment: backup, canary: [{deployment: next, percent: 30}]}
""")


def _key(secret: str, key_id: str, team: str) -> tuple[bytes, ApiKey]:
    return HASHER.digest(secret), ApiKey(key_id, secret[:8], Principal("usr_" + team), team,
                                         frozenset({"inference"}))


@pytest.fixture
async def fleet(fake: tuple[FakeUpstream, int]) -> AsyncIterator[Harness]:
    upstream, port = fake
    h = await make_harness(platform(port, _closed_port()), upstream, port)
    everything = ("chat", "busy-chat", "broken-chat", "crashing-chat", "to-model", "premium",
                  "canary")
    identity = Identity([_key(GRANTED, "key_granted", "team_all"),
                         _key(NARROW, "key_narrow", "team_narrow")],
                        {"team_all": everything,
                         "team_narrow": tuple(m for m in everything if m != "premium")})
    state = h.app.state
    state.snapshot = Snapshot(state.snapshot.catalog, identity, state.snapshot.policy)
    yield h
    await state.stop()


def chat(model: str, **extra: Any) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], **extra})


def records(h: Harness) -> list[UsageRecord]:
    taken, _ = h.app.state.outbox.take(10_000)
    return [r for r in taken if isinstance(r, UsageRecord)]


def auth(secret: str = GRANTED, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **headers}


async def test_a_deployment_nobody_can_reach_falls_back_and_the_record_says_where(
        fleet: Harness) -> None:
    reply = await request(fleet.app, "POST", "/v1/chat/completions", body=chat("chat"),
                          headers=auth())
    assert reply.status == 200, reply.body
    (record,) = records(fleet)
    assert (record.model, record.deployment, record.status) == ("chat", "backup", 200)
    metrics = await request(fleet.app, "GET", "/metrics", headers=auth())
    assert b'inferenceops_fallbacks_total{model="chat",deployment="backup"} 1' in metrics.body


async def test_an_engine_that_refused_with_503_past_the_retries_falls_back(fleet: Harness) -> None:
    fleet.app.state.pipeline.forwarder.retry = RetryPolicy(budget=0)  # straight to the chain
    reply = await request(fleet.app, "POST", "/v1/chat/completions", body=chat("busy-chat"),
                          headers=auth())
    assert reply.status == 200, reply.body
    assert records(fleet)[-1].deployment == "backup"


@pytest.mark.parametrize("stream", [False, True])
async def test_an_engine_that_may_have_started_is_never_sent_on(fleet: Harness, stream: bool) -> None:
    model = "crashing-chat" if stream else "broken-chat"
    reply = await request(fleet.app, "POST", "/v1/chat/completions",
                          body=chat(model, stream=stream), headers=auth())
    if stream:  # the stream started: it ends with an error event, never a replay
        assert reply.status == 200 and b'"error"' in reply.body
    else:
        assert reply.status == 502
    assert [r.path for r in fleet.fake.requests] == ["/v1/chat/completions"]  # no second try
    assert records(fleet)[-1].deployment == model.removesuffix("-chat")


async def test_a_fallback_to_another_model_needs_a_grant_and_then_bills_that_model(
        fleet: Harness) -> None:
    refused = await request(fleet.app, "POST", "/v1/chat/completions", body=chat("to-model"),
                            headers=auth(NARROW))
    assert refused.status == 503, refused.body  # no replica of its own; premium not granted
    assert orjson.loads(refused.body)["error"]["type"]
    served = await request(fleet.app, "POST", "/v1/chat/completions", body=chat("to-model"),
                           headers=auth())
    assert served.status == 200, served.body
    assert orjson.loads(fleet.fake.requests[-1].body)["model"] == "ok"
    narrow, granted = records(fleet)
    assert (narrow.model, narrow.deployment, narrow.status) == ("to-model", "down", 503)
    assert (granted.model, granted.deployment) == ("premium", "other")


async def test_a_canary_takes_its_share_and_a_session_stays_on_one_side(fleet: Harness) -> None:
    for _ in range(200):
        reply = await request(fleet.app, "POST", "/v1/chat/completions", body=chat("canary"),
                              headers=auth())
        assert reply.status == 200
    split = [r.deployment for r in records(fleet)]
    assert 30 <= split.count("next") <= 90, split.count("next")  # 30 % of 200, give or take
    assert set(split) == {"backup", "next"}
    for session in ("alice", "bob", "carol", "dave"):
        for _ in range(5):
            await request(fleet.app, "POST", "/v1/chat/completions", body=chat("canary"),
                          headers=auth(**{"x-inferenceops-session": session}))
        assert len({r.deployment for r in records(fleet)}) == 1, session
