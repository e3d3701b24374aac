"""Parsing of an inference request: the fields the gateway decides on, and the edge checks.

The body is parsed once with orjson. ``model``, ``stream`` and the token caps
are read here because later stages decide on them; the documented OpenAI
parameters are checked for type and range by ``gateway.params`` (so an engine
never sees ``temperature: "hot"``). Everything else is the engine's business
and travels in the original bytes. No pydantic models of payloads here (hot
path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from inferenceops.errors import InvalidJSON, InvalidParameter, InvalidRequest
from inferenceops.pipeline.params import check_params, wrong_type
from inferenceops.platform import Endpoint

#: The field holding each endpoint's input (what the prompt is counted from).
INPUT_FIELD = {
    Endpoint.CHAT: "messages",
    Endpoint.COMPLETIONS: "prompt",
    Endpoint.EMBEDDINGS: "input",
}

#: Deepest JSON nesting accepted (the top-level object is level 1). orjson *reads*
#: 1,024 levels but *writes* only 254 (``ORJSON_WRITE_DEPTH``), and the body is
#: written again whenever the model name is rewritten (``gateway.proxy``) — so a
#: body deeper than 254 would parse, then fail as a 500. 128 is well below that,
#: leaving room for a stage that wraps the document (a batch line's envelope, a
#: dialect's translation); it is also serde_json's default limit (what Rust
#: engines and proxies parse with), and far above real requests (the deepest tool
#: JSON Schemas are tens of levels).
MAX_JSON_DEPTH = 128
#: What orjson.dumps can nest; a unit test pins it, so an orjson upgrade that
#: changes it fails loudly instead of shifting the limit.
ORJSON_WRITE_DEPTH = 254


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
    check_depth(body, doc)

    model = doc.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str) or not model:
        raise wrong_type("model", "a non-empty string", model)

    stream = doc.get("stream")
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise wrong_type("stream", "a boolean", stream)

    max_tokens = None
    if endpoint is not Endpoint.EMBEDDINGS:
        for field in ("max_tokens", "max_completion_tokens"):
            value = doc.get(field)
            if value is None:
                continue
            if type(value) is not int:  # not isinstance: a boolean is not a token count
                raise wrong_type(field, "an integer", value)
            if not 1 <= value <= max_tokens_limit:
                raise InvalidParameter(
                    f"'{field}' must be between 1 and {max_tokens_limit}; got {value}.",
                    param=field)
            max_tokens = value if max_tokens is None else min(max_tokens, value)

    field = INPUT_FIELD[endpoint]
    if doc.get(field) is None:
        raise _missing(field)
    check_params(doc, endpoint)
    return InferenceRequest(model, stream, max_tokens, doc, body)


def check_depth(body: bytes, doc: dict[str, Any]) -> None:
    """Refuse a document nested deeper than ``MAX_JSON_DEPTH`` (see there for why).

    Every container opens with a ``{`` or ``[`` byte, so a body with no more of
    those than the limit cannot be too deep: counting them (in C) is all a
    typical request pays. A body with more is measured by orjson itself: wrapped
    in ``ORJSON_WRITE_DEPTH - MAX_JSON_DEPTH`` more levels, it can be written
    exactly when it is at most ``MAX_JSON_DEPTH`` deep. That runs in C, ~10x
    faster than walking the document in Python, and is exactly the check that
    matters (can the body be written again, with room to spare).
    """
    if len(body) <= MAX_JSON_DEPTH or body.count(b"{") + body.count(b"[") <= MAX_JSON_DEPTH:
        return
    wrapped: object = doc
    for _ in range(ORJSON_WRITE_DEPTH - MAX_JSON_DEPTH):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:  # a parsed document can fail to be written only by depth
        raise InvalidJSON(f"The request body's JSON is nested more than {MAX_JSON_DEPTH} levels "
                          f"deep; at most {MAX_JSON_DEPTH} are accepted.") from None


def _missing(field: str) -> InvalidParameter:
    return InvalidParameter(f"Missing required parameter: '{field}'.", param=field,
                            code="missing_required_parameter")
