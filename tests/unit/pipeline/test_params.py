"""Edge checks of OpenAI's documented parameters: wrong types and ranges are 400s naming the field.

Each rule is exercised through ``parse_inference`` (what the handler calls), so
the tests also prove the table is wired to the right endpoint. What must *not*
be refused is tested as hard: the official SDK's own requests, ``null`` for
any field, and fields the gateway does not know.
"""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import openai
import orjson
import pydantic
import pytest

from inferenceops.errors import InvalidParameter
from inferenceops.pipeline.params import MAX_N, RULES
from inferenceops.pipeline.request import InferenceRequest, parse_inference
from inferenceops.platform import Endpoint

USER = [{"role": "user", "content": "hi"}]
CHAT: dict[str, Any] = {"model": "m", "messages": USER}
COMPLETION: dict[str, Any] = {"model": "m", "prompt": "once upon"}
EMBEDDING: dict[str, Any] = {"model": "m", "input": "hello"}
BASE = {Endpoint.CHAT: CHAT, Endpoint.COMPLETIONS: COMPLETION, Endpoint.EMBEDDINGS: EMBEDDING}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def parse(doc: dict[str, Any], endpoint: Endpoint = Endpoint.CHAT) -> InferenceRequest:
    return parse_inference(orjson.dumps(doc), endpoint, 100_000)


def refused(extra: dict[str, Any], endpoint: Endpoint = Endpoint.CHAT) -> InvalidParameter:
    with pytest.raises(InvalidParameter) as info:
        parse({**BASE[endpoint], **extra}, endpoint)
    assert info.value.status == 400 and info.value.type == "invalid_request_error"
    return info.value


# --- refused, with the field named ----------------------------------------------------------

BAD_CHAT = [
    ("temperature", "hot", "invalid_type"),
    ("temperature", True, "invalid_type"),
    ("temperature", [1], "invalid_type"),
    ("temperature", -0.1, "invalid_value"),
    ("temperature", 2.01, "invalid_value"),
    ("top_p", 1.5, "invalid_value"),
    ("top_p", -1, "invalid_value"),
    ("top_p", "1", "invalid_type"),
    ("n", 0, "invalid_value"),
    ("n", MAX_N + 1, "invalid_value"),
    ("n", 2.0, "invalid_type"),
    ("n", True, "invalid_type"),
    ("stop", 5, "invalid_type"),
    ("stop", ["a", 1], "invalid_type"),
    ("stop", ["a", "b", "c", "d", "e"], "invalid_value"),
    ("stop", {"a": "b"}, "invalid_type"),
    ("presence_penalty", 2.5, "invalid_value"),
    ("presence_penalty", False, "invalid_type"),
    ("frequency_penalty", -3, "invalid_value"),
    ("frequency_penalty", "0", "invalid_type"),
    ("logit_bias", [1, 2], "invalid_type"),
    ("logit_bias", {"50256": 101}, "invalid_value"),
    ("logit_bias", {"50256": -100.5}, "invalid_value"),
    ("logit_bias", {"50256": "1"}, "invalid_type"),
    ("logit_bias", {"50256": True}, "invalid_type"),
    ("logit_bias", {"hello": 1}, "invalid_value"),
    ("logit_bias", {"-1": 1}, "invalid_value"),
    ("logit_bias", {"\u0661": 1}, "invalid_value"),  # an Arabic-Indic digit is no token id
    ("seed", 1.5, "invalid_type"),
    ("seed", "7", "invalid_type"),
    ("seed", True, "invalid_type"),
    ("seed", 2**63, "invalid_value"),
    ("user", 7, "invalid_type"),
    ("logprobs", 1, "invalid_type"),
    ("logprobs", "true", "invalid_type"),
    ("stream_options", "on", "invalid_type"),
    ("parallel_tool_calls", "yes", "invalid_type"),
    ("response_format", "json", "invalid_type"),
    ("tools", {"type": "function"}, "invalid_type"),
    ("tool_choice", 1, "invalid_type"),
    ("tool_choice", "sometimes", "invalid_value"),
]


@pytest.mark.parametrize(("field", "value", "code"), BAD_CHAT)
def test_bad_chat_parameter_is_400_naming_it(field: str, value: object, code: str) -> None:
    error = refused({field: value})
    assert (error.param, error.code) == (field, code)
    assert error.message.startswith(f"'{field}' must be ")  # says what is allowed


@pytest.mark.parametrize(("extra", "param", "code"), [
    ({"top_logprobs": 3}, "top_logprobs", "invalid_value"),  # needs logprobs: true
    ({"logprobs": False, "top_logprobs": 3}, "top_logprobs", "invalid_value"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "invalid_value"),
    ({"logprobs": True, "top_logprobs": -1}, "top_logprobs", "invalid_value"),
    ({"logprobs": True, "top_logprobs": "5"}, "top_logprobs", "invalid_type"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage",
     "invalid_type"),
    ({"stream_options": {"include_usage": 1}}, "stream_options.include_usage", "invalid_type"),
    ({"response_format": {}}, "response_format.type", "missing_required_parameter"),
    ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
    ({"response_format": {"type": 1}}, "response_format.type", "invalid_type"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema",
     "missing_required_parameter"),
    ({"response_format": {"type": "json_schema", "json_schema": "{}"}},
     "response_format.json_schema", "invalid_type"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": []}}},
     "response_format.json_schema.schema", "invalid_type"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": 5}}},
     "response_format.json_schema.name", "invalid_type"),
    ({"response_format": {"type": "json_schema", "json_schema": {"strict": "yes"}}},
     "response_format.json_schema.strict", "invalid_type"),
    ({"tools": ["get_weather"]}, "tools[0]", "invalid_type"),
    ({"tools": [TOOL, {"type": "retrieval"}]}, "tools[1].type", "invalid_value"),
    ({"tools": [{"type": "function"}]}, "tools[0].function", "missing_required_parameter"),
    ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name",
     "missing_required_parameter"),
    ({"tools": [{"type": "function", "function": {"name": ["f"]}}]}, "tools[0].function.name",
     "invalid_type"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
     "tools[0].function.parameters", "invalid_type"),
    ({"tools": [{"type": "function", "function": {"name": "f", "strict": 1}}]},
     "tools[0].function.strict", "invalid_type"),
    ({"tools": [{"type": "custom", "custom": {"name": 3}}]}, "tools[0].custom.name",
     "invalid_type"),
    ({"tools": [{"function": {"name": 3}}]}, "tools[0].function.name", "invalid_type"),
    ({"tools": [{"custom": {"name": "c"}}]}, "tools[0].function", "missing_required_parameter"),
    ({"tool_choice": {"type": "function"}}, "tool_choice.function",
     "missing_required_parameter"),
    ({"tool_choice": {"type": "function", "function": {"name": None}}},
     "tool_choice.function.name", "missing_required_parameter"),
    ({"tool_choice": {"function": {"name": "f"}}}, "tool_choice.type",
     "missing_required_parameter"),
    ({"tool_choice": {"type": "tool", "name": "f"}}, "tool_choice.type", "invalid_value"),
    ({"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "any", "tools": []}}},
     "tool_choice.allowed_tools.mode", "invalid_value"),
    ({"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto"}}},
     "tool_choice.allowed_tools.tools", "missing_required_parameter"),
    ({"messages": [USER[0], "hi"]}, "messages[1]", "invalid_type"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role", "missing_required_parameter"),
    ({"messages": [{"role": 1, "content": "hi"}]}, "messages[0].role", "invalid_type"),
])
def test_bad_nested_chat_value_names_its_path(extra: dict[str, Any], param: str,
                                              code: str) -> None:
    error = refused(extra)
    assert (error.param, error.code) == (param, code)


@pytest.mark.parametrize(("field", "value", "code"), [
    ("logprobs", True, "invalid_type"),  # an integer on the legacy endpoint, not a boolean
    ("logprobs", 6, "invalid_value"),
    ("logprobs", -1, "invalid_value"),
    ("best_of", 21, "invalid_value"),
    ("echo", "yes", "invalid_type"),
    ("suffix", 1, "invalid_type"),
    ("temperature", "hot", "invalid_type"),
    ("n", 0, "invalid_value"),
    ("stop", [1], "invalid_type"),
    ("prompt", {"text": "hi"}, "invalid_type"),
    ("prompt", ["a", 1], "invalid_value"),  # a mix
    ("prompt", [1, -2], "invalid_value"),  # token ids are >= 0
    ("prompt", [1, True], "invalid_value"),
    ("prompt", [[1, 2], [3, "x"]], "invalid_value"),
    ("prompt", [[1, 2], 3], "invalid_value"),
])
def test_bad_completions_parameter_is_400(field: str, value: object, code: str) -> None:
    error = refused({field: value}, Endpoint.COMPLETIONS)
    assert (error.param, error.code) == (field, code)


@pytest.mark.parametrize(("field", "value", "code"), [
    ("encoding_format", "int8", "invalid_value"),
    ("encoding_format", 1, "invalid_type"),
    ("dimensions", 0, "invalid_value"),
    ("dimensions", 1.5, "invalid_type"),
    ("dimensions", True, "invalid_type"),
    ("user", ["u"], "invalid_type"),
    ("input", [{"text": "hi"}], "invalid_value"),
    ("input", [], "invalid_value"),
    ("input", "", "invalid_value"),
    ("input", 5, "invalid_type"),
])
def test_bad_embeddings_parameter_is_400(field: str, value: object, code: str) -> None:
    error = refused({field: value}, Endpoint.EMBEDDINGS)
    assert (error.param, error.code) == (field, code)


def test_the_message_says_what_is_allowed_and_what_came() -> None:
    assert refused({"temperature": "hot"}).message == (
        "'temperature' must be a number between 0 and 2; got a string.")
    assert refused({"temperature": 3.5}).message == (
        "'temperature' must be a number between 0 and 2; got 3.5.")
    assert refused({"user": "x" * 500, "n": 1000}).message == (
        f"'n' must be an integer between 1 and {MAX_N}; got 1000.")
    long = refused({"tool_choice": "x" * 500}).message  # a long value is shown cut short
    assert '"xxxxx' in long and "x" * 60 not in long and len(long) < 200


# --- let through ----------------------------------------------------------------------------

GOOD_CHAT: list[dict[str, Any]] = [
    {"temperature": 0, "top_p": 1, "n": MAX_N, "presence_penalty": -2, "frequency_penalty": 2},
    {"temperature": 2.0, "top_p": 0.0, "n": 1},
    {"stop": "\n"}, {"stop": []}, {"stop": ["a", "b", "c", "d"]},
    {"logit_bias": {}}, {"logit_bias": {"50256": -100, "15043": 99.5, "0": 0}},
    {"seed": -(2**63)}, {"seed": 2**63 - 1}, {"user": ""},
    {"logprobs": True, "top_logprobs": 0}, {"logprobs": True, "top_logprobs": 20},
    {"logprobs": False},
    {"response_format": {"type": "text"}}, {"response_format": {"type": "json_object"}},
    {"response_format": {"type": "json_schema", "json_schema": {
        "name": "answer", "strict": True, "schema": {"type": "object", "properties": {}}}}},
    {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},  # llama.cpp
    {"response_format": {"type": "json_object", "schema": {"type": "object"}}},  # llama.cpp
    {"response_format": {"type": "structural_tag", "structures": [], "triggers": []}},  # vLLM
    {"tools": []}, {"tools": [TOOL], "tool_choice": "required", "parallel_tool_calls": False},
    {"tools": [{"function": {"name": "f"}}]},  # vLLM reads a missing type as "function"
    {"tools": [{"type": "custom", "custom": {"name": "sql", "format": {"type": "text"}}}]},
    {"tool_choice": "none"}, {"tool_choice": "auto"},
    {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    {"tool_choice": {"type": "custom", "custom": {"name": "sql"}}},
    {"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [TOOL]}}},
    {"stream": True, "stream_options": {"include_usage": True, "include_obfuscation": False,
                                        "continuous_usage_stats": True}},
    {"stream_options": {}},
    {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
         "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}]},
]


@pytest.mark.parametrize("extra", GOOD_CHAT)
def test_valid_chat_parameters_pass(extra: dict[str, Any]) -> None:
    assert parse({**CHAT, **extra}).doc == {**CHAT, **extra}


@pytest.mark.parametrize(("endpoint", "extra"), [
    (Endpoint.COMPLETIONS, {"logprobs": 0, "echo": True, "suffix": "", "best_of": 0}),
    (Endpoint.COMPLETIONS, {"logprobs": 5, "best_of": 20, "stop": ["\n"], "seed": 1}),
    (Endpoint.COMPLETIONS, {"prompt": ""}),
    (Endpoint.COMPLETIONS, {"prompt": ["a", "b"]}),
    (Endpoint.COMPLETIONS, {"prompt": [1, 2, 3]}),
    (Endpoint.COMPLETIONS, {"prompt": [[1, 2], [3], []]}),
    (Endpoint.COMPLETIONS, {"prompt": []}),
    (Endpoint.EMBEDDINGS, {"encoding_format": "float", "dimensions": 1, "user": "u"}),
    (Endpoint.EMBEDDINGS, {"encoding_format": "base64", "dimensions": 3072}),
    (Endpoint.EMBEDDINGS, {"input": ["a", "b"]}),
    (Endpoint.EMBEDDINGS, {"input": [[1, 2], [3]]}),
    (Endpoint.EMBEDDINGS, {"input": [0] * 10_000}),
])
def test_valid_parameters_pass_on_each_endpoint(endpoint: Endpoint, extra: dict[str, Any]) -> None:
    doc = {**BASE[endpoint], **extra}
    assert parse(doc, endpoint).doc == doc


def test_null_is_left_to_the_engine_for_every_checked_field() -> None:
    for endpoint, rules in RULES.items():
        required = {"messages", "prompt", "input"}
        doc = {**BASE[endpoint], **{name: None for name in rules if name not in required}}
        assert parse(doc, endpoint).doc == doc


def test_fields_of_other_endpoints_and_engines_pass_untouched() -> None:
    """Rules are per endpoint, and fields no table knows are the engine's business."""
    vllm = {"top_k": "not checked", "min_p": [1], "guided_json": {"type": "object"},
            "repetition_penalty": 9, "chat_template_kwargs": {"enable_thinking": False}}
    assert parse({**CHAT, **vllm, "echo": "chat has no echo"}).doc["echo"] == "chat has no echo"
    body = orjson.dumps({**EMBEDDING, "temperature": "hot", "tools": 1})
    assert parse_inference(body, Endpoint.EMBEDDINGS, 1).body is body
    assert parse({**COMPLETION, "logprobs": 3, "tools": "x"}, Endpoint.COMPLETIONS)


# --- the official SDK's own requests pass ---------------------------------------------------

class Answer(pydantic.BaseModel):
    city: str
    temperatures: list[float]
    nested: dict[str, list[dict[str, int]]]


def _sdk_bodies() -> list[tuple[Endpoint, bytes]]:
    """What the openai SDK actually sends for ordinary calls (captured by a mock transport)."""
    sent: list[tuple[Endpoint, bytes]] = []
    endpoints = {"/chat/completions": Endpoint.CHAT, "/completions": Endpoint.COMPLETIONS,
                 "/embeddings": Endpoint.EMBEDDINGS}

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((endpoints[request.url.path.removeprefix("/v1")], request.content))
        return httpx.Response(400, json={"error": {"message": "captured", "type": "x"}})

    client = openai.OpenAI(api_key="sk-x", base_url="http://gw.invalid/v1", max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    calls = [
        lambda: client.chat.completions.create(model="m", messages=USER),
        lambda: client.chat.completions.create(
            model="m", messages=[{"role": "system", "content": "s"}, *USER], temperature=0.2,
            top_p=0.9, n=3, stop=["\n\n", "END"], presence_penalty=0.5, frequency_penalty=-0.5,
            logit_bias={"50256": -100}, seed=42, user="u-1", logprobs=True, top_logprobs=5,
            max_completion_tokens=64, stream=True, stream_options={"include_usage": True},
            tools=[TOOL, openai.pydantic_function_tool(Answer)], tool_choice="auto",
            parallel_tool_calls=True),
        lambda: client.chat.completions.create(
            model="m", messages=USER, tool_choice={"type": "function",
                                                   "function": {"name": "get_weather"}},
            tools=[TOOL], response_format={"type": "json_object"}),
        lambda: client.chat.completions.parse(model="m", messages=USER, response_format=Answer),
        lambda: client.completions.create(model="m", prompt=["a", "b"], max_tokens=5,
                                          logprobs=2, echo=True, best_of=2, n=2, suffix="!",
                                          temperature=1, stop="\n", seed=1),
        lambda: client.completions.create(model="m", prompt=[[1, 2], [3]]),
        lambda: client.embeddings.create(model="m", input="hello"),
        lambda: client.embeddings.create(model="m", input=["a", "b"], dimensions=256,
                                         encoding_format="float", user="u"),
        lambda: client.embeddings.create(model="m", input=[[1, 2, 3]]),
    ]
    for call in calls:
        with pytest.raises(openai.BadRequestError):
            call()
    client.close()
    return sent


def test_the_official_sdk_requests_pass_validation() -> None:
    bodies = _sdk_bodies()
    assert len(bodies) == 9
    for endpoint, body in bodies:
        request = parse_inference(body, endpoint, 100_000)
        assert request.body is body
    # the interesting ones were really sent as expected
    docs = [orjson.loads(body) for _, body in bodies]
    assert docs[1]["stream_options"] == {"include_usage": True}
    assert docs[1]["tools"][1]["function"]["parameters"]["properties"]["nested"]
    assert docs[3]["response_format"]["type"] == "json_schema"
    assert docs[6]["encoding_format"] == "base64"  # the SDK's default
