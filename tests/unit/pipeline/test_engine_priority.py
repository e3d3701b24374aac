"""A deployment whose engines run priority scheduling gets each request's service class as its
engine ``priority`` (interactive 0, background and batch 1) — whatever the caller wrote there;
any other deployment gets the caller's bytes as they were."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from tests.support.asgi import request
from tests.support.fake_upstream import FakeUpstream
from tests.unit.conftest import ADMIN_KEY, AUTH, Harness, make_harness

from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.sink import CollectingSink
from inferenceops.platform import Endpoint


def platform(port: int) -> str:
    def deployment(name: str, policy: str) -> str:  # the engine knows the model by its name
        return (f"  - name: {name}\n    engine: openai\n    served_model: {name}-chat\n"
                f"    scheduling_policy: {policy}\n"
                f"    replicas:\n      - url: http://127.0.0.1:{port}/v1\n")
    return ("deployments:\n" + deployment("ordered", "priority") + deployment("plain", "fcfs")
            + "models:\n  - {name: ordered-chat, deployment: ordered}\n"
              "  - {name: plain-chat, deployment: plain}\n")


@pytest.fixture
async def h(fake: tuple[FakeUpstream, int]) -> AsyncIterator[Harness]:
    upstream, port = fake
    harness = await make_harness(platform(port), upstream, port)
    yield harness
    await harness.app.state.stop()


def chat(model: str, **extra: object) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}],
                         **extra})


def sent(h: Harness) -> dict[str, object]:
    return orjson.loads(h.fake.requests[-1].body)


@pytest.mark.parametrize(("header", "given", "wanted"), [
    (None, None, 0), ("interactive", -100, 0), ("background", None, 1),
    ("background", 0, 1), (None, True, 0), ("background", True, 1), ("batch", "x", 1)])
async def test_the_engine_gets_the_service_class_never_the_callers_priority(
        h: Harness, header: str | None, given: object, wanted: int) -> None:
    extra = {} if given is None else {"priority": given}
    headers = AUTH if header is None else {**AUTH, "x-inferenceops-priority": header}
    reply = await request(h.app, "POST", "/v1/chat/completions",
                          body=chat("ordered-chat", **extra), headers=headers)
    assert reply.status == 200, reply.body
    if header is None and given is None:
        assert "priority" not in sent(h)  # 0, the engine's default: nothing to write
    else:
        assert sent(h)["priority"] == wanted and type(sent(h)["priority"]) is int


async def test_an_interactive_request_without_a_priority_is_forwarded_byte_for_byte(
        h: Harness) -> None:
    body = b'{"model":"ordered-chat",  "messages":[{"role":"user","content":"hi"}]}'
    reply = await request(h.app, "POST", "/v1/chat/completions", body=body, headers=AUTH)
    assert reply.status == 200
    assert h.fake.requests[-1].body == body  # no priority written: 0 is the engine's default


async def test_a_batch_line_goes_to_the_engine_with_the_batch_priority(h: Harness) -> None:
    facts = RequestFacts.for_call(Endpoint.CHAT, chat("ordered-chat"), api_key=ADMIN_KEY,
                                  priority="interactive", batch=True)
    sink = CollectingSink()
    await h.app.state.pipeline.run(h.app.state.snapshot, facts, sink)
    assert sink.status == 200 and sent(h)["priority"] == 1


async def test_a_fcfs_deployment_gets_the_callers_bytes_as_they_were(h: Harness) -> None:
    body = chat("plain-chat", priority=5)
    headers = {**AUTH, "x-inferenceops-priority": "background"}
    reply = await request(h.app, "POST", "/v1/chat/completions", body=body, headers=headers)
    assert reply.status == 200
    assert h.fake.requests[-1].body == body
