"""The gateway in front of real vLLM: routing over replicas, answers unchanged, vLLM's errors.

Greedy decoding (temperature 0, a fixed ``max_tokens``) makes a replica's answer
a function of the request, and both replicas serve the same weights, so an
answer through the gateway must equal the answer a replica gives directly: text,
finish reason and token usage, streamed or not. The model's output is
gibberish by design: tests compare answers, never read them. Requests are sent
one at a time, so no answer depends on what else a replica was batching.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.engines._vllm import MAX_MODEL_LEN, PUBLIC_MODEL, SERVED_MODEL, VllmServer
from tests.engines.conftest import start_gateway, stop_gateway
from tests.integration._harness import ADMIN_KEY
from tests.integration._support import assert_error_body

GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 24}
CHATS = [
    [{"role": "user", "content": "def fibonacci(n):"}],
    [{"role": "system", "content": "You write Python."},
     {"role": "user", "content": "Parse a CSV file and print each row."}],
]
PROMPTS = ["import os\nimport sys\n\n\ndef main(", "class Queue:\n    def __init__(self"]
#: Over MAX_MODEL_LEN tokens whatever the tokenizer merges: every number is one token at least.
TOO_LONG = " ".join(str(i) for i in range(2 * MAX_MODEL_LEN))
REQUESTS_METRIC = "vllm:request_success_total"


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str | None
    usage: tuple[int, int, int]  # prompt, completion, total tokens


def _usage(usage: Any) -> tuple[int, int, int]:
    assert usage is not None
    return (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)


def chat(sdk: openai.OpenAI, model: str, messages: list[dict[str, str]]) -> Answer:
    done = sdk.chat.completions.create(model=model, messages=messages, **GREEDY)  # type: ignore[arg-type]
    [choice] = done.choices
    return Answer(choice.message.content or "", choice.finish_reason, _usage(done.usage))


def chat_stream(sdk: openai.OpenAI, model: str, messages: list[dict[str, str]]) -> Answer:
    """Concatenated deltas, the finish reason, and the usage chunk (which must come last)."""
    text, finish, usage = [], None, None
    stream = sdk.chat.completions.create(model=model, messages=messages, stream=True,  # type: ignore[arg-type]
                                         stream_options={"include_usage": True}, **GREEDY)
    for chunk in stream:
        assert usage is None, "a chunk after the usage chunk"
        if chunk.usage is not None:
            assert chunk.choices == [], chunk
            usage = chunk.usage
            continue
        [choice] = chunk.choices
        text.append(choice.delta.content or "")
        finish = choice.finish_reason or finish
    return Answer("".join(text), finish, _usage(usage))


def complete(sdk: openai.OpenAI, model: str, prompt: str) -> Answer:
    done = sdk.completions.create(model=model, prompt=prompt, **GREEDY)
    [choice] = done.choices
    return Answer(choice.text, choice.finish_reason, _usage(done.usage))


def complete_stream(sdk: openai.OpenAI, model: str, prompt: str) -> Answer:
    text, finish, usage = [], None, None
    stream = sdk.completions.create(model=model, prompt=prompt, stream=True,
                                    stream_options={"include_usage": True}, **GREEDY)
    for chunk in stream:
        assert usage is None, "a chunk after the usage chunk"
        if chunk.usage is not None:
            assert chunk.choices == [], chunk
            usage = chunk.usage
            continue
        [choice] = chunk.choices
        text.append(choice.text)
        finish = choice.finish_reason or finish
    return Answer("".join(text), finish, _usage(usage))


def _direct(direct: list[openai.OpenAI], ask: Any, request: Any) -> Answer:
    """What both replicas answer directly (the same: they serve the same weights)."""
    answers = [ask(sdk, SERVED_MODEL, request) for sdk in direct]
    assert answers[0] == answers[1], "the two replicas disagree"
    assert answers[0].usage[1] > 0
    return answers[0]


def test_the_gateway_lists_the_model_and_both_replicas_serve(
        client: openai.OpenAI, replicas: list[VllmServer]) -> None:
    assert PUBLIC_MODEL in {m.id for m in client.models.list()}
    before = [r.metric(REQUESTS_METRIC) for r in replicas]
    sent = 6
    for i in range(sent):
        chat(client, PUBLIC_MODEL, CHATS[i % len(CHATS)])
    served = [r.metric(REQUESTS_METRIC) - b for r, b in zip(replicas, before, strict=True)]
    assert sum(served) == sent, served
    assert all(n > 0 for n in served), f"requests per replica: {served}"


@pytest.mark.parametrize("messages", CHATS, ids=["one-turn", "with-system"])
def test_greedy_chat_through_the_gateway_equals_the_replicas_answer(
        client: openai.OpenAI, direct: list[openai.OpenAI], messages: list[dict[str, str]]) -> None:
    expected = _direct(direct, chat, messages)
    # Twice: one request per replica under the default routing (ties rotate).
    assert [chat(client, PUBLIC_MODEL, messages) for _ in range(2)] == [expected, expected]
    streamed = _direct(direct, chat_stream, messages)
    assert streamed == expected  # vLLM itself: the stream adds up to the answer
    assert [chat_stream(client, PUBLIC_MODEL, messages) for _ in range(2)] == [expected, expected]


@pytest.mark.parametrize("prompt", PROMPTS, ids=["main", "class"])
def test_greedy_completion_through_the_gateway_equals_the_replicas_answer(
        client: openai.OpenAI, direct: list[openai.OpenAI], prompt: str) -> None:
    expected = _direct(direct, complete, prompt)
    assert [complete(client, PUBLIC_MODEL, prompt) for _ in range(2)] == [expected, expected]
    assert _direct(direct, complete_stream, prompt) == expected
    assert [complete_stream(client, PUBLIC_MODEL, prompt) for _ in range(2)] == [expected, expected]


def _refusal(sdk: openai.OpenAI, model: str, endpoint: str) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        if endpoint == "completions":
            sdk.completions.create(model=model, prompt=TOO_LONG, max_tokens=4)
        else:
            sdk.chat.completions.create(model=model, max_tokens=4,
                                        messages=[{"role": "user", "content": TOO_LONG}])
    return caught.value


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_a_too_long_prompt_is_vllms_400_in_openais_shape(
        client: openai.OpenAI, direct: list[openai.OpenAI], endpoint: str) -> None:
    theirs = _refusal(direct[0], SERVED_MODEL, endpoint)
    ours = _refusal(client, PUBLIC_MODEL, endpoint)
    assert ours.status_code == theirs.status_code == 400
    error = assert_error_body(ours.response.content)
    expected = assert_error_body(theirs.response.content)
    assert {k: error[k] for k in ("message", "type", "param", "code")} == \
        {k: expected[k] for k in ("message", "type", "param", "code")}


def _post(server: VllmServer, path: str, body: dict[str, str]) -> None:
    request = urllib.request.Request(f"{server.origin}{path}", data=orjson.dumps(body),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert resp.status == 200


def test_the_replicas_load_the_built_adapter_at_run_time(
        replicas: list[VllmServer], direct: list[openai.OpenAI], tiny_model: Path) -> None:
    """The tier's promise to adapter tests: the LoRA build loads, is listed, answers, unloads."""
    server, sdk = replicas[1], direct[1]
    _post(server, "/v1/load_lora_adapter", {"lora_name": "tiny-lora",
                                            "lora_path": str(tiny_model / "lora")})
    try:
        listed = {m.id: getattr(m, "parent", None) for m in sdk.models.list()}
        assert listed == {SERVED_MODEL: None, "tiny-lora": SERVED_MODEL}
        base, adapted = (complete(sdk, model, PROMPTS[0]) for model in (SERVED_MODEL, "tiny-lora"))
        assert adapted.usage[0] == base.usage[0] and adapted.usage[1] > 0
    finally:
        _post(server, "/v1/unload_lora_adapter", {"lora_name": "tiny-lora"})
    assert {m.id for m in sdk.models.list()} == {SERVED_MODEL}


def test_priority_scheduled_replicas_take_the_class_the_gateway_writes(
        replicas: list[VllmServer], direct: list[openai.OpenAI], tmp_path: Path) -> None:
    """The replicas run ``--scheduling-policy priority``: vLLM takes a ``priority`` then (it
    refuses one other than 0 under FCFS). A deployment declaring it gets each request's class
    written there by the gateway — background work 1, interactive 0 even when the caller asked
    for less — and the answers are the same: priority orders the queue, not the output."""
    expected = _direct(direct, complete, PROMPTS[0])
    ranked = direct[0].completions.create(model=SERVED_MODEL, prompt=PROMPTS[0], **GREEDY,
                                          extra_body={"priority": 1})
    assert ranked.usage is not None and ranked.usage.completion_tokens == expected.usage[1]
    gw = start_gateway(tmp_path, replicas, name="priority-gateway", scheduling_policy="priority")
    try:
        with openai.OpenAI(base_url=gw.base_url, api_key=ADMIN_KEY, max_retries=0,
                           timeout=120) as sdk:
            background = sdk.with_options(
                default_headers={"x-inferenceops-priority": "background"})
            assert complete(background, PUBLIC_MODEL, PROMPTS[0]) == expected
            jumping = sdk.completions.create(model=PUBLIC_MODEL, prompt=PROMPTS[0], **GREEDY,
                                             extra_body={"priority": -100})
            assert jumping.choices[0].text == expected.text
    finally:
        stop_gateway(gw)
