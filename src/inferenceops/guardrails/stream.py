"""Redacting generated text in a stream: entities split across SSE chunks are still caught.

A model writes a card number or an address a few tokens at a time, each in its own SSE
event. ``StreamRedactor`` is a stream filter (``pipeline.filters``) that keeps, per
choice, the text it has not let out yet (``pending``) and a bounded look-back of what it
has (``context``, the original text, for detectors that need what came before: the label
before a password, the header of a private key). Each new piece is scanned with its
context; the filter lets out everything up to the **hold point** — the start of the
trailing text that could still be the beginning of an entity — redacted, and keeps the
rest:

* the last word (no whitespace): an address, a key, a URL are one word;
* before it, groups of digits or capitals joined by one space, dot or dash
  (``4242 4242 ``, ``+44 20 ``, ``DE89 3704 ``, ``AB 12 ``), at most ``_GROUPS``;
* an unfinished ``-----BEGIN … PRIVATE KEY-----`` header.

Prose — lower-case words and spaces — is let out as it comes, so the added delay is the
entity (or word) in progress, not the stream. Held text is bounded by ``max_hold``
characters: past it, the oldest held text goes out as it is (scanned, but without what
follows). At a choice's ``finish_reason`` and at the end of the stream everything
held goes out, redacted.

The event carrying a piece is kept and its text replaced by what may go out now (an
empty string while all of it is held), so roles, finish reasons and usage pass as they
were; only ``delta.content`` (chat) and ``text`` (completions) are rewritten. Events that
are not JSON pass untouched. Within those bounds, the redacted text a client reads does
not depend on how the engine split it (``tests/unit/guardrails/test_stream.py``).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import orjson

from inferenceops.errors import PolicyViolation
from inferenceops.guardrails.detect import placeholder, scan
from inferenceops.guardrails.findings import ENTITIES

_EVENT_END = b"\n\n"
_GROUPS = 8
_GROUPS_TAIL = re.compile(r"(?:(?:[A-Z]{2}\d\d|[+(]?\d[\d()]{0,5}|[A-Z0-9]{4}|[A-Z]{2})[ .-])"
                          rf"{{0,{_GROUPS}}}\S*\Z")
_KEY_HEADER = "-----BEGIN"
MAX_HOLD = 512
LOOKBACK = 256


class _Choice:
    __slots__ = ("context", "pending")

    def __init__(self) -> None:
        self.context = ""
        self.pending = ""


class StreamRedactor:
    """A ``StreamFilter`` that redacts ``entities`` in an SSE stream's generated text."""

    __slots__ = ("_entities", "_block", "_choices", "_partial", "_max_hold", "_lookback",
                 "last_event", "found")

    def __init__(self, entities: Collection[str] = ENTITIES, *, block: Collection[str] = (),
                 max_hold: int = MAX_HOLD, lookback: int = LOOKBACK) -> None:
        self._block = frozenset(block)
        self._entities = frozenset(entities) | self._block
        self.found: dict[str, int] = {}  # entity → findings redacted (for the record)
        self._choices: dict[int, _Choice] = {}
        self._partial = b""
        self._max_hold = max_hold
        self._lookback = lookback
        self.last_event: dict[str, Any] | None = None  # for the synthesized end event

    def feed(self, chunk: bytes) -> bytes:
        data = self._partial + chunk if self._partial else chunk
        cut = data.rfind(_EVENT_END)
        if cut == -1:
            self._partial = data
            return b""
        events, self._partial = data[:cut], data[cut + 2:]
        return b"".join(self._event(e) for e in events.split(_EVENT_END) if e)

    def flush(self) -> bytes:
        """The end of the stream: what is still held goes out, in one last event."""
        out = self._partial
        self._partial = b""
        rest = {i: self._release(c, final=True) for i, c in self._choices.items() if c.pending}
        rest = {i: text for i, text in rest.items() if text}
        if rest:
            doc = self.last_event or {"object": "chat.completion.chunk"}
            chat = _is_chat(doc)
            doc = {**doc, "choices": [
                {"index": i, "delta": {"content": text}} if chat else {"index": i, "text": text}
                for i, text in sorted(rest.items())]}
            out += b"data: " + orjson.dumps(doc) + _EVENT_END
        return out

    def _event(self, event: bytes) -> bytes:
        if event.startswith(b"data: [DONE]"):
            return self.flush() + event + _EVENT_END  # what is held goes out before the end
        if not event.startswith(b"data:"):
            return event + _EVENT_END  # a comment, an id: not text
        try:
            doc = orjson.loads(event[5:])
        except orjson.JSONDecodeError:
            return event + _EVENT_END
        choices = doc.get("choices") if isinstance(doc, dict) else None
        if not isinstance(choices, list):
            return event + _EVENT_END
        changed = False
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            state = self._choices.setdefault(index if isinstance(index, int) else 0, _Choice())
            final = choice.get("finish_reason") is not None
            holder, field = _text_field(choice)
            piece = holder.get(field) if holder is not None else None
            if not isinstance(piece, str) and not (final and state.pending):
                continue
            state.pending += piece if isinstance(piece, str) else ""
            out = self._release(state, final=final)
            if holder is None:
                holder, field = choice.setdefault("delta", {}), "content"
                if not _is_chat(doc):
                    holder, field = choice, "text"
            holder[field] = out
            changed = True
        if isinstance(doc, dict):
            self.last_event = {k: v for k, v in doc.items() if k in ("id", "object", "created",
                                                                     "model")}
        return b"data: " + orjson.dumps(doc) + _EVENT_END if changed else event + _EVENT_END

    def _release(self, state: _Choice, *, final: bool) -> str:
        """What of ``state.pending`` may go out now, redacted; the rest stays held."""
        context, pending = state.context, state.pending
        window = context + pending
        start = len(context)
        cut = len(window) if final else max(_hold_point(window, start), len(window) - self._max_hold)
        findings = scan(window, self._entities)
        for f in findings:
            if f.entity in self._block and f.end > start:
                raise PolicyViolation(
                    f"The answer contains {f.entity.replace('_', ' ')} data, which the guardrail "
                    "policies that apply to this key do not allow; the stream was ended.",
                    extra={"guardrail": f.entity})
        for f in findings:  # never cut through an entity: hold it whole
            if f.start < cut < f.end and f.start >= start and not final:
                cut = f.start
        parts: list[str] = []
        at = start
        for f in findings:
            if f.end <= start or f.start >= cut:
                continue
            if f.start >= start:
                parts.append(window[at:f.start])
                parts.append(placeholder(f.entity))
                self.found[f.entity] = self.found.get(f.entity, 0) + 1
            # else: it began in text already let out (past the look-back's reach): the rest
            # of it is dropped, not let out
            at = min(max(at, f.end), cut)
        parts.append(window[at:cut])
        state.context = window[:cut][-self._lookback:]
        state.pending = window[cut:]
        return "".join(parts)


def _hold_point(window: str, start: int) -> int:
    """Where the text that could still grow into an entity begins (at least ``start``)."""
    m = _GROUPS_TAIL.search(window, start)
    hold = m.start() if m is not None else len(window)
    header = window.rfind(_KEY_HEADER, max(start, len(window) - 64))
    if header != -1 and window.find("-----", header + len(_KEY_HEADER)) == -1:
        hold = min(hold, header)
    return max(hold, start)


def _text_field(choice: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return delta, "content"
    if "text" in choice:
        return choice, "text"
    return None, "content"


def _is_chat(doc: dict[str, Any]) -> bool:
    return doc.get("object") != "text_completion"
