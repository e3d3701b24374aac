"""Parsing and validating simulator request bodies into small plain objects.

Touches only the fields the simulator needs, with hand-written checks (no
pydantic per request: this sits on a benchmark path). Every problem raises a
:class:`BadRequest`/:class:`NotFound` with a vLLM-like message, so bad input
is always a 4xx, never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .errors import BadRequest, NotFound
from .text import flatten_messages, tokenize

__all__ = [
    "EmbedRequest",
    "GenerateRequest",
    "check_context",
    "parse_embed",
    "parse_generate",
    "parse_json",
    "prompt_of",
]


@dataclass(slots=True)
class GenerateRequest:
    model: str
    prompt: str  # text the filler RNG is keyed on (token ids rendered as text)
    token_ids: list[int]
    max_tokens: int | None
    stream: bool
    include_usage: bool
    seed: int | None
    ignore_eos: bool
    priority: int = 0  # vLLM's: lower runs first (priority scheduling only)


@dataclass(slots=True)
class EmbedRequest:
    model: str
    inputs: list[tuple[str, list[int]]]  # (key text, token ids) per input
    base64: bool


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Invalid JSON in request body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    return data


def requested_model(data: dict[str, Any], served: str, adapters: dict[str, str]) -> str:
    """The model name asked for; 404 unless it is the served model or a loaded adapter."""
    model = data.get("model", served)
    if model is None:
        return served
    if not isinstance(model, str):
        raise BadRequest("'model' must be a string", param="model")
    if model != served and model not in adapters:
        raise NotFound(f"The model `{model}` does not exist.", param="model")
    return model


def _opt_int(data: dict[str, Any], name: str, minimum: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be an integer", param=name)
    if value < minimum:
        raise BadRequest(f"{name} must be at least {minimum}, got {value}.", param=name)
    return value


def _token_list(value: Any) -> list[int] | None:
    if value and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value):
        return list(value)
    return None


def prompt_of(data: dict[str, Any], *, chat: bool) -> tuple[str, list[int]]:
    """(key text, token ids) from ``messages`` (chat) or ``prompt`` (completions/tokenize)."""
    if chat:
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list of messages", param="messages")
        text = flatten_messages(messages)
        if text is None:
            raise BadRequest(
                "each message needs a string 'role' and string, list or null 'content'",
                param="messages",
            )
        return text, tokenize(text)
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        ids = tokenize(prompt)
        if not ids:
            raise BadRequest("The prompt cannot be empty.", param="prompt")
        return prompt, ids
    if isinstance(prompt, list) and (token_ids := _token_list(prompt)) is not None:
        return " ".join(map(str, token_ids)), token_ids
    raise BadRequest(
        "'prompt' must be a non-empty string, a list of token ids, or a list holding one "
        "of those (the simulator serves one prompt per request)",
        param="prompt",
    )


def check_context(prompt_len: int, max_tokens: int | None, max_model_len: int, what: str) -> None:
    """vLLM's 400 when the prompt plus the requested completion cannot fit the context."""
    if max_tokens is None:
        if prompt_len >= max_model_len:
            raise BadRequest(
                f"This model's maximum context length is {max_model_len} tokens. However, "
                f"your request has {prompt_len} input tokens. Please reduce the length of "
                f"the input {what}."
            )
        return
    if prompt_len + max_tokens > max_model_len:
        raise BadRequest(
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt_len + max_tokens} tokens ({prompt_len} in the {what}, "
            f"{max_tokens} in the completion). Please reduce the length of the {what} or "
            "completion."
        )


def parse_generate(data: dict[str, Any], *, chat: bool, model: str, max_model_len: int,
                   priority_scheduling: bool = False) -> GenerateRequest:
    text, ids = prompt_of(data, chat=chat)
    max_tokens = _opt_int(data, "max_completion_tokens", 1) if chat else None
    if max_tokens is None:
        max_tokens = _opt_int(data, "max_tokens", 1)
    check_context(len(ids), max_tokens, max_model_len, "messages" if chat else "prompt")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream")
    options = data.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object", param="stream_options")
    include_usage = bool(options and options.get("include_usage"))
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest("'seed' must be an integer", param="seed")
    priority = data.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise BadRequest("'priority' must be an integer", param="priority")
    if priority != 0 and not priority_scheduling:
        # vLLM's answer when the engine was not started with --scheduling-policy priority.
        raise BadRequest(f"Got priority {priority} but Priority scheduling is not enabled.",
                         param="priority")
    return GenerateRequest(
        model=model,
        prompt=text,
        token_ids=ids,
        max_tokens=max_tokens,
        stream=stream,
        include_usage=include_usage,
        seed=seed,
        ignore_eos=data.get("ignore_eos") is True,
        priority=priority,
    )


def parse_embed(data: dict[str, Any], *, model: str, max_model_len: int, dim: int) -> EmbedRequest:
    raw = data.get("input")
    items: list[Any]
    if isinstance(raw, str) or (isinstance(raw, list) and _token_list(raw) is not None):
        items = [raw]
    elif isinstance(raw, list) and raw:
        items = raw
    else:
        raise BadRequest("'input' must be a string, a list of strings, or token-id arrays", param="input")
    inputs: list[tuple[str, list[int]]] = []
    for item in items:
        if isinstance(item, str):
            ids = tokenize(item)
            key = item
        elif isinstance(item, list) and (token_ids := _token_list(item)) is not None:
            ids = token_ids
            key = "\0ids:" + " ".join(map(str, ids))
        else:
            raise BadRequest("each input must be a string or a list of token ids", param="input")
        if not ids:
            raise BadRequest("input cannot be empty", param="input")
        if len(ids) > max_model_len:
            raise BadRequest(
                f"This model's maximum context length is {max_model_len} tokens. However, you "
                f"requested {len(ids)} tokens in the input for embedding generation. Please "
                "reduce the length of the input.",
                param="input",
            )
        inputs.append((key, ids))
    fmt = data.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    dimensions = data.get("dimensions")
    if dimensions is not None and dimensions != dim:
        raise BadRequest(
            f"This model produces {dim}-dimensional embeddings and does not support "
            f"'dimensions'={dimensions!r}",
            param="dimensions",
        )
    return EmbedRequest(model=model, inputs=inputs, base64=fmt == "base64")
