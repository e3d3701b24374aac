"""What a request actually used, read from the engine's answer without slowing the stream.

Non-streaming answers carry ``usage`` in their JSON. Streaming answers carry it
only in a final chunk, and only when the request asked for it
(``stream_options.include_usage``); when settlement needs the count, the
gateway asks on the client's behalf (``request_stream_usage``) and ``UsageTap``
drops that extra chunk again if the client had not asked, so the client sees
exactly the stream it requested.

``UsageTap`` parses an event only when it may hold a usage object (a substring
search); other chunks pass through as the same bytes object. It also counts
content deltas, so a stream that ends early (the client left, the engine
failed) can still be charged: one token per non-empty content delta is what
engines send. Every streamed chunk passes here, so ``feed`` is kept to a few
substring scans (in C) for a chunk of whole events, the common case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson

# A usage *object*: OpenAI also sends ``"usage":null`` in every chunk once usage is asked for.
_USAGE_MARKERS = (b'"usage":{', b'"usage": {')
_USAGE, _USAGE_SPACED = _USAGE_MARKERS
_EVENT_END = b"\n\n"
_CONTENT, _NO_CONTENT = b'"content":"', b'"content":""'
_TEXT, _NO_TEXT = b'"text":"', b'"text":""'


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # of the prompt, served from the engine's prefix cache

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def parse_usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt = value.get("prompt_tokens")
    completion = value.get("completion_tokens", 0)
    if not _count(prompt) or not _count(completion):
        return None
    details = value.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(prompt, completion, min(cached, prompt) if _count(cached) else 0)


def usage_from_body(payload: bytes) -> Usage | None:
    """The ``usage`` of a whole JSON answer, or None when absent or malformed."""
    if b'"usage"' not in payload:
        return None
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return parse_usage(doc.get("usage")) if isinstance(doc, dict) else None


def request_stream_usage(doc: dict[str, Any]) -> bool:
    """Make a streaming request ask for usage; returns whether the client had asked itself."""
    options = doc.get("stream_options")
    if isinstance(options, dict):
        if options.get("include_usage") is True:
            return True
        doc["stream_options"] = {**options, "include_usage": True}
    else:
        doc["stream_options"] = {"include_usage": True}
    return False


class UsageTap:
    """Watches an SSE stream for the usage chunk; optionally hides it from the client."""

    __slots__ = ("usage", "content_events", "_hide", "_pending")

    def __init__(self, hide_usage_chunk: bool) -> None:
        self.usage: Usage | None = None
        self.content_events = 0
        self._hide = hide_usage_chunk
        self._pending = b""

    @property
    def hides(self) -> bool:
        """True when the usage chunk is ours, not the client's (the request was rewritten)."""
        return self._hide

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to pass on for ``chunk``: whole events only (a partial one waits for its end).

        Engines write whole events, so in practice every chunk goes out at once, as the
        same object when it holds no usage.
        """
        if not self._pending and chunk.endswith(_EVENT_END):
            complete = chunk  # whole events: the common case, no copy
        else:
            data = self._pending + chunk if self._pending else chunk
            cut = data.rfind(_EVENT_END) + 2
            if cut == 1:  # no event end yet
                self._pending = data
                return b""
            complete, self._pending = data[:cut], data[cut:]
        self.content_events += _content_deltas(complete)
        if _USAGE not in complete and _USAGE_SPACED not in complete:
            return complete
        kept = [event for event in complete.split(_EVENT_END)[:-1] if self._keep(event)]
        return b"".join(event + _EVENT_END for event in kept)

    def flush(self) -> bytes:
        """What is still held back when the stream ends (an unterminated last event)."""
        pending, self._pending = self._pending, b""
        return pending

    def estimated_completion_tokens(self) -> int:
        """For a stream cut short: one token per non-empty content delta seen."""
        return self.content_events

    def _keep(self, event: bytes) -> bool:
        if not any(m in event for m in _USAGE_MARKERS):
            return True
        payload = event.partition(b"data:")[2].strip()
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(doc, dict):
            return True
        usage = parse_usage(doc.get("usage"))
        if usage is not None:
            self.usage = usage
        return not (self._hide and usage is not None and not doc.get("choices"))


def _content_deltas(events: bytes) -> int:
    """Non-empty content (chat) and text (completions) deltas in whole ``events``."""
    found = 0
    content = events.count(_CONTENT)
    if content:
        found = content - events.count(_NO_CONTENT)
    text = events.count(_TEXT)
    if text:
        found += text - events.count(_NO_TEXT)
    return found


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
