"""What a request actually used, read from the engine's answer without slowing the stream.

Non-streaming answers carry ``usage`` in their JSON. Streaming answers carry it
only in a final chunk, and only when the request asked for it
(``stream_options.include_usage``); when settlement needs the count, the
gateway asks on the client's behalf (``request_stream_usage``) and ``UsageTap``
drops that extra chunk again if the client had not asked, so the client sees
exactly the stream it requested.

``UsageTap`` parses an event only when it may hold a usage object (a substring
search); other chunks pass through as the same bytes object. The usage chunk
comes with the end of the stream (usually in the read that carries
``[DONE]``), so it is parsed when ``usage`` is asked for, after the stream's
end went out — not on the way: an event shaped as the usage chunk (a usage
object and ``"choices":[]``) is recognised by those bytes and, when it is
ours to hide, cut out as it passes. It also counts
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
#: How the usage chunk says it carries no choice (OpenAI and vLLM write it compact).
_NO_CHOICES, _NO_CHOICES_SPACED = b'"choices":[]', b'"choices": []'
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
    if payload.find(b'"usage"') == -1:
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

    __slots__ = ("_usage", "_unread", "content_events", "_hide", "_pending")

    def __init__(self, hide_usage_chunk: bool) -> None:
        self._usage: Usage | None = None
        self._unread: list[bytes] = []  # events holding a usage marker, not parsed yet (0 or 1)
        self.content_events = 0
        self._hide = hide_usage_chunk
        self._pending = b""

    @property
    def usage(self) -> Usage | None:
        """The last valid usage the stream carried (its events are parsed now, once)."""
        if self._unread:
            self._read_unread()
        return self._usage

    @property
    def hides(self) -> bool:
        """True when the usage chunk is ours, not the client's (the request was rewritten)."""
        return self._hide

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to pass on for ``chunk``: whole events only (a partial one waits for its end).

        Engines write whole events, so in practice every chunk goes out at once, as the
        same object when it holds no usage.
        """
        if self._pending or not chunk.endswith(_EVENT_END):
            data = self._pending + chunk if self._pending else chunk
            cut = data.rfind(_EVENT_END) + 2
            if cut == 1:  # no event end yet
                self._pending = data
                return b""
            chunk, self._pending = data[:cut], data[cut:]
        self.content_events += _content_deltas(chunk)
        # find, not ``in``: on Python 3.11 ``bytes in bytes`` first tries the needle as an
        # integer and formats (then drops) a TypeError, ~10x the cost of the scan itself.
        if chunk.find(_USAGE) == -1 and chunk.find(_USAGE_SPACED) == -1:
            return chunk
        return self._usage_events(chunk)

    def flush(self) -> bytes:
        """What is still held back when the stream ends (an unterminated last event)."""
        pending, self._pending = self._pending, b""
        return pending

    def estimated_completion_tokens(self) -> int:
        """For a stream cut short: one token per non-empty content delta seen."""
        return self.content_events

    def _usage_events(self, events: bytes) -> bytes:
        """Whole ``events``, one of them (at least) holding a usage object: kept to be read
        later (``usage``), and without the usage chunk when it is ours to hide.

        Runs once a stream, right before its end goes out. An event shaped as the usage
        chunk (``"choices":[]``) is cut by that shape alone; only an event whose shape does
        not say (no ``"choices"`` member, or written otherwise) is parsed here to decide.
        """
        if not self._hide:
            self._defer(events)  # nothing to cut: the same object goes on
            return events
        parts = events.split(_EVENT_END)
        parts.pop()  # what follows the last event's end: b""
        kept = []
        for event in parts:
            if event.find(_USAGE) == -1 and event.find(_USAGE_SPACED) == -1:
                kept.append(event)
            elif event.find(_NO_CHOICES) != -1 or event.find(_NO_CHOICES_SPACED) != -1:
                self._defer(event)  # the usage chunk: hidden now, read later
            else:
                self._read_unread()  # in stream order: the last valid usage is the stream's
                doc = self._read(event)
                if doc is None or doc.get("choices"):
                    kept.append(event)
        if len(kept) == len(parts):
            return events
        return b"".join(event + _EVENT_END for event in kept)

    def _defer(self, events: bytes) -> None:
        """Keep ``events`` to be read later; at most one piece waits (an engine may send
        usage in every chunk, as vLLM's continuous usage stats do)."""
        if self._unread:
            self._read_unread()
        self._unread.append(events)

    def _read_unread(self) -> None:
        unread, self._unread = self._unread, []
        for events in unread:
            for event in events.split(_EVENT_END):
                if event.find(_USAGE) != -1 or event.find(_USAGE_SPACED) != -1:
                    self._read(event)

    def _read(self, event: bytes) -> dict[str, Any] | None:
        """Parse ``event`` (one SSE event); its document when it carries a valid usage (kept
        as the stream's usage), else None."""
        try:
            doc = orjson.loads(event[event.index(b"data:") + 5:])
        except ValueError:  # no data field, or not JSON (orjson.JSONDecodeError is a ValueError)
            return None
        if type(doc) is not dict:
            return None
        usage = parse_usage(doc.get("usage"))
        if usage is None:
            return None
        self._usage = usage
        return doc


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
