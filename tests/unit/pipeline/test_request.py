"""Request parsing: the fields the gateway decides on, and nothing more."""

from __future__ import annotations

import orjson
import pytest

from inferenceops.errors import InvalidJSON, InvalidParameter, InvalidRequest
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.request import MAX_JSON_DEPTH, ORJSON_WRITE_DEPTH, parse_inference
from inferenceops.pipeline.stages import route_facts
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


def _nested(depth: int, siblings: int = 0) -> bytes:
    """A chat body ``depth`` levels deep (the top-level object is level 1).

    ``siblings`` adds shallow arrays, so the body has more brackets than the
    limit even when it is not deep (the cheap bracket count cannot decide it).
    """
    chain = b"[" * (depth - 1) + b"]" * (depth - 1)
    return (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "deep": ' + chain
            + b', "wide": [' + b",".join([b"[]"] * siblings) + b"]}")


@pytest.mark.parametrize("siblings", [0, MAX_JSON_DEPTH + 1])
def test_nesting_up_to_the_limit_is_accepted_and_can_be_written_again(siblings: int) -> None:
    request = parse_inference(_nested(MAX_JSON_DEPTH, siblings), Endpoint.CHAT, 10)
    request.doc["model"] = "rewritten"  # what the proxy does before writing it again
    assert orjson.loads(orjson.dumps(request.doc))["model"] == "rewritten"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 200, 254, 255, 256, 600, 1023, 1024, 1025])
def test_nesting_past_the_limit_is_invalid_json(depth: int) -> None:
    """254–1,023 deep used to parse and then fail to be written again: a 500."""
    with pytest.raises(InvalidJSON) as info:
        parse_inference(_nested(depth), Endpoint.CHAT, 10)
    assert (info.value.status, info.value.code) == (400, "invalid_json")
    if depth <= 1024:  # orjson reads up to 1,024 levels; past that its own error says so
        assert f"more than {MAX_JSON_DEPTH} levels" in info.value.message


def test_depth_is_checked_before_the_fields() -> None:
    body = b'{"model": 5, "x": ' + b"[" * 300 + b"]" * 300 + b"}"
    with pytest.raises(InvalidJSON):
        parse_inference(body, Endpoint.CHAT, 10)


def test_orjson_writes_exactly_the_depth_the_limit_relies_on() -> None:
    """``check_depth`` pads by ORJSON_WRITE_DEPTH - MAX_JSON_DEPTH; an orjson upgrade
    that moves its write limit must fail here, not silently shift ours."""
    def nested(depth: int) -> object:
        value: object = []
        for _ in range(depth - 1):
            value = [value]
        return value

    assert MAX_JSON_DEPTH <= ORJSON_WRITE_DEPTH
    orjson.dumps(nested(ORJSON_WRITE_DEPTH))
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(nested(ORJSON_WRITE_DEPTH + 1))


@pytest.mark.parametrize(("header", "user", "session"), [
    (b"conv-42", "alice", "conv-42"),  # the header names the conversation
    (None, "alice", "alice"),  # else the body's user field stands in
    (None, None, None),  # neither: no session
    (b"", "alice", "alice"),
])
def test_the_session_header_wins_over_the_user_field(header: bytes | None, user: object,
                                                     session: str | None) -> None:
    headers = [(b"x-inferenceops-session", header)] if header is not None else []
    facts = RequestFacts.from_headers(headers, Endpoint.CHAT)
    doc = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    if user is not None:
        doc["user"] = user
    facts.request = parse_inference(orjson.dumps(doc), Endpoint.CHAT, 1000)
    assert route_facts(facts).session == session
