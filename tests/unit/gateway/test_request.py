"""Request parsing: the fields the gateway decides on, and nothing more."""

from __future__ import annotations

import orjson
import pytest

from inferenceops.errors import InvalidJSON, InvalidParameter, InvalidRequest
from inferenceops.gateway.request import parse_inference
from inferenceops.platform import Endpoint

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def parse(doc: object, endpoint: Endpoint = Endpoint.CHAT, limit: int = 1000):
    return parse_inference(orjson.dumps(doc), endpoint, limit)


def test_minimal_chat_request_is_parsed() -> None:
    req = parse({**CHAT, "stream": True, "max_tokens": 7, "extra": {"kept": True}})
    assert (req.model, req.stream, req.max_tokens) == ("m", True, 7)
    assert req.doc["extra"] == {"kept": True}


def test_smaller_of_max_tokens_and_max_completion_tokens_is_kept() -> None:
    assert parse({**CHAT, "max_tokens": 9, "max_completion_tokens": 4}).max_tokens == 4


@pytest.mark.parametrize(("doc", "code", "param"), [
    ({"messages": CHAT["messages"]}, "missing_required_parameter", "model"),
    ({**CHAT, "model": 3}, "invalid_type", "model"),
    ({**CHAT, "model": ""}, "invalid_type", "model"),
    ({**CHAT, "stream": "yes"}, "invalid_type", "stream"),
    ({**CHAT, "max_tokens": "10"}, "invalid_type", "max_tokens"),
    ({**CHAT, "max_tokens": True}, "invalid_type", "max_tokens"),
    ({**CHAT, "max_tokens": 0}, "invalid_value", "max_tokens"),
    ({**CHAT, "max_tokens": -5}, "invalid_value", "max_tokens"),
    ({**CHAT, "max_tokens": 10**12}, "invalid_value", "max_tokens"),
    ({**CHAT, "max_completion_tokens": 1.5}, "invalid_type", "max_completion_tokens"),
    ({**CHAT, "stream_options": []}, "invalid_type", "stream_options"),
    ({"model": "m"}, "missing_required_parameter", "messages"),
    ({"model": "m", "messages": []}, "invalid_type", "messages"),
    ({"model": "m", "messages": "hi"}, "invalid_type", "messages"),
])
def test_bad_chat_fields_name_the_parameter(doc: dict, code: str, param: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        parse(doc)
    assert (info.value.code, info.value.param, info.value.status) == (code, param, 400)


def test_completions_need_a_prompt_and_embeddings_an_input() -> None:
    with pytest.raises(InvalidParameter, match="prompt"):
        parse({"model": "m"}, Endpoint.COMPLETIONS)
    with pytest.raises(InvalidParameter, match="input"):
        parse({"model": "m", "input": []}, Endpoint.EMBEDDINGS)
    assert parse({"model": "m", "input": "x"}, Endpoint.EMBEDDINGS).max_tokens is None


@pytest.mark.parametrize("body", [b"", b"{", b"nul", b"\xff\xfe{}", b'{"a": 1} x', b'"str"', b"[1]"])
def test_non_object_json_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_inference(body, Endpoint.CHAT, 10)
    assert info.value.status == 400
    assert info.value.code == "invalid_json"
    assert isinstance(info.value, InvalidJSON) or not body
