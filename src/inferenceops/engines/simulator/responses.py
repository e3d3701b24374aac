"""OpenAI/vLLM-shaped response bodies and SSE chunks, encoded with orjson.

Stream chunks are the hot part (one per token under load), so the constant
parts of a chunk are encoded once per request and only the text is encoded
per chunk. No pydantic, no dict building per token.
"""

from __future__ import annotations

from typing import Any

import orjson

from .text import embedding_vector, encode_base64

__all__ = [
    "DONE",
    "StreamEncoder",
    "completion_body",
    "embeddings_body",
    "usage",
]

DONE = b"data: [DONE]\n\n"
_FINISH = {None: b"null", "stop": b'"stop"', "length": b'"length"'}


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def completion_body(
    *,
    chat: bool,
    rid: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    usage_: dict[str, Any],
) -> bytes:
    if chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        obj = "text_completion"
    return orjson.dumps(
        {
            "id": rid,
            "object": obj,
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": usage_,
        }
    )


class StreamEncoder:
    """SSE chunks for one streaming request."""

    __slots__ = ("_chat", "_head", "_text_open", "_envelope")

    def __init__(self, *, chat: bool, rid: str, created: int, model: str) -> None:
        self._chat = chat
        obj = "chat.completion.chunk" if chat else "text_completion"
        self._envelope = {"id": rid, "object": obj, "created": created, "model": model}
        self._head = b"data: " + orjson.dumps(self._envelope)[:-1] + b',"choices":[{"index":0,'
        self._text_open = b'"delta":{"content":' if chat else b'"text":'

    def role_chunk(self) -> bytes:
        """The first chat chunk: the assistant role with empty content, as OpenAI sends."""
        return (
            self._head
            + b'"delta":{"role":"assistant","content":""},'
            + b'"logprobs":null,"finish_reason":null}]}\n\n'
        )

    def text_chunk(self, text: str, finish_reason: str | None) -> bytes:
        close = b"}," if self._chat else b","
        return b"".join(
            (
                self._head,
                self._text_open,
                orjson.dumps(text),
                close,
                b'"logprobs":null,"finish_reason":',
                _FINISH[finish_reason],
                b"}]}\n\n",
            )
        )

    def usage_chunk(self, usage_: dict[str, Any]) -> bytes:
        """The final ``include_usage`` chunk: empty choices, usage filled in."""
        payload = orjson.dumps({**self._envelope, "choices": [], "usage": usage_})
        return b"data: " + payload + b"\n\n"

    @staticmethod
    def error_chunk(body: bytes) -> bytes:
        return b"data: " + body + b"\n\n"


def embeddings_body(
    *,
    rid: str,
    created: int,
    model: str,
    seed: int,
    keys: list[str],
    dim: int,
    base64: bool,
    prompt_tokens: int,
) -> bytes:
    data = []
    for index, key in enumerate(keys):
        vector = embedding_vector(seed, key, dim)
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": encode_base64(vector) if base64 else vector,
            }
        )
    return orjson.dumps(
        {
            "id": rid,
            "object": "list",
            "created": created,
            "model": model,
            "data": data,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
    )
