"""Guardrails through a real ``inferenceops serve`` with the official SDK unchanged: the
platform file's policies reach the served snapshot (through the store), a blocked prompt
is an ``openai.BadRequestError`` with ``content_policy_violation`` and never reaches the
engine, a redacted prompt reaches it redacted, and a streamed answer reads redacted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest
import yaml

from tests.integration._harness import ADMIN_KEY, FakeUpstreams, Gateway
from tests.integration._support import _openai
from tests.support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

GUARDRAILS = {
    "policies": [{"name": "pii", "version": 2, "rules": [
        {"entities": ["card", "secret"], "action": "block", "applies_to": ["input"]},
        {"entities": ["email", "phone"], "action": "redact"},
    ]}],
    "attach": [{"policy": "pii", "model": "guarded"}],
}


@pytest.fixture(scope="module")
def engine(upstreams: FakeUpstreams) -> tuple[FakeUpstream, str]:
    fake = FakeUpstream()
    return fake, upstreams.serve(fake)


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory,
        engine: tuple[FakeUpstream, str]) -> Iterator[openai.OpenAI]:
    _, url = engine
    config = yaml.safe_dump({
        "deployments": [_openai("up", "ok", [url])],
        "models": [{"name": "guarded", "deployment": "up"}, {"name": "open", "deployment": "up"}],
        "guardrails": GUARDRAILS}, sort_keys=False)
    gw = Gateway(Path(tmp_path_factory.mktemp("guardrails")), config=config, name="guardrails")
    try:
        gw.wait_ready()
        with openai.OpenAI(base_url=gw.base_url, api_key=ADMIN_KEY, max_retries=0,
                           timeout=30) as client:
            yield client
    finally:
        gw.stop()


def test_a_blocked_prompt_is_a_bad_request_error_and_never_reaches_the_engine(
        sdk: openai.OpenAI, engine: tuple[FakeUpstream, str]) -> None:
    fake, _ = engine
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="guarded", messages=[
            {"role": "user", "content": "charge 4242 4242 4242 4242 please"}])
    error = info.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["type"], error["param"]) == (
        "content_policy_violation", "invalid_request_error", "messages")
    assert len(fake.requests) == before
    # Attached to the model "guarded" only: the same prompt to another model passes.
    sdk.chat.completions.create(model="open", messages=[
        {"role": "user", "content": "charge 4242 4242 4242 4242 please"}])
    assert len(fake.requests) == before + 1


def test_a_redacted_prompt_reaches_the_engine_redacted_and_the_stream_reads_redacted(
        sdk: openai.OpenAI, engine: tuple[FakeUpstream, str]) -> None:
    fake, _ = engine
    fake.answer_text = "sure, call +44 20 7946 0958 tomorrow"
    try:
        stream = sdk.chat.completions.create(model="guarded", stream=True, messages=[
            {"role": "user", "content": "my address is anna@example.com"}])
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    finally:
        fake.answer_text = None
    assert text == "sure, call [PHONE] tomorrow"
    sent = orjson.loads(fake.requests[-1].body)
    assert sent["messages"][0]["content"] == "my address is [EMAIL]"
