"""Minimal parsing of an inference request: the few fields the gateway decides on.

The body is parsed once with orjson; only ``model``, ``stream``, the token
caps and the presence of the endpoint's input field are checked. Everything
else is the engine's business and travels in the original bytes. No pydantic
models of payloads here (hot path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from inferenceops.errors import InvalidJSON, InvalidParameter, InvalidRequest
from inferenceops.platform import Endpoint

_INPUT_FIELD = {
    Endpoint.CHAT: "messages",
    Endpoint.COMPLETIONS: "prompt",
    Endpoint.EMBEDDINGS: "input",
}


@dataclass(slots=True)
class InferenceRequest:
    model: str
    stream: bool
    max_tokens: int | None
    doc: dict[str, Any]
    body: bytes


def parse_inference(body: bytes, endpoint: Endpoint, max_tokens_limit: int) -> InferenceRequest:
    if not body:
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidJSON("The request body must be a JSON object.")

    model = doc.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str) or not model:
        raise _wrong_type("model", "a non-empty string", model)

    stream = doc.get("stream")
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)

    max_tokens = None
    if endpoint is not Endpoint.EMBEDDINGS:
        for field in ("max_tokens", "max_completion_tokens"):
            value = doc.get(field)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise _wrong_type(field, "an integer", value)
            if not 1 <= value <= max_tokens_limit:
                raise InvalidParameter(
                    f"'{field}' must be between 1 and {max_tokens_limit}; got {value}.",
                    param=field)
            max_tokens = value if max_tokens is None else min(max_tokens, value)
        options = doc.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise _wrong_type("stream_options", "an object", options)

    field = _INPUT_FIELD[endpoint]
    value = doc.get(field)
    if value is None:
        raise _missing(field)
    if endpoint is Endpoint.CHAT:
        if not isinstance(value, list) or not value:
            raise _wrong_type(field, "a non-empty array of messages", value)
    elif not isinstance(value, (str, list)):
        raise _wrong_type(field, "a string or an array", value)
    elif endpoint is Endpoint.EMBEDDINGS and not value:
        raise InvalidParameter(f"'{field}' must not be empty.", param=field)
    return InferenceRequest(model, stream, max_tokens, doc, body)


def _missing(field: str) -> InvalidParameter:
    return InvalidParameter(f"Missing required parameter: '{field}'.", param=field,
                            code="missing_required_parameter")


def _wrong_type(field: str, expected: str, value: object) -> InvalidParameter:
    got = "null" if value is None else type(value).__name__
    return InvalidParameter(f"'{field}' must be {expected}; got {got}.", param=field,
                            code="invalid_type")
