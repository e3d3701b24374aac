"""Keeping a streamed answer for a team that stores bodies: a stream filter, bounded.

``StreamCapture`` is the last filter before usage extraction (``pipeline.forward``), so it
sees the stream as the caller gets it — after guardrails redacted it. It copies at most
``limit`` bytes and passes every chunk on untouched; past the limit it only notes that the
answer was cut. ``stream_answer`` turns the captured SSE into the text of each choice,
which is what is stored (the events themselves say nothing more worth keeping).
"""

from __future__ import annotations

from typing import Any

import orjson


class StreamCapture:
    """Copies up to ``limit`` bytes of a stream (see the module doc)."""

    __slots__ = ("_parts", "_room", "truncated")

    def __init__(self, limit: int) -> None:
        self._parts: list[bytes] = []
        self._room = limit
        self.truncated = False

    def feed(self, chunk: bytes) -> bytes:
        room = self._room
        if room > 0:
            kept = chunk if len(chunk) <= room else chunk[:room]
            self._parts.append(kept)
            self._room = room - len(kept)
        if len(chunk) > room:
            self.truncated = True
        return chunk

    def flush(self) -> bytes:
        return b""

    def captured(self) -> bytes:
        return b"".join(self._parts)


def stream_answer(raw: bytes, *, truncated: bool = False) -> dict[str, Any]:
    """``{"object": "stream", "choices": [{"index": i, "text": …}]}`` from captured SSE.

    Each choice's text is what its events carried (a chat delta's ``content`` and tool-call
    ``arguments``, a completion's ``text``), in order. An event cut by the capture limit
    is left out; when the capture was cut, each text ends at its last whitespace, so no
    half of a word — or of an e-mail address the redaction would then miss — is kept.
    """
    texts: dict[int, list[str]] = {}
    for event in raw.split(b"\n\n"):
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if not data or data == b"[DONE]":
                continue
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            choices = doc.get("choices") if isinstance(doc, dict) else None
            for choice in choices if isinstance(choices, list) else ():
                if isinstance(choice, dict):
                    _collect(choice, texts)
    choices = []
    for index in sorted(texts):
        text = "".join(texts[index])
        if truncated:
            cut = max(text.rfind(" "), text.rfind("\n"))
            text = text[:cut] if cut >= 0 else ""
        choices.append({"index": index, "text": text})
    return {"object": "stream", "truncated": truncated, "choices": choices}


def _collect(choice: dict[str, Any], texts: dict[int, list[str]]) -> None:
    index = choice.get("index", 0)
    if not isinstance(index, int):
        return
    parts = texts.setdefault(index, [])
    text = choice.get("text")
    if isinstance(text, str):
        parts.append(text)
    delta = choice.get("delta")
    if isinstance(delta, dict):
        content = delta.get("content")
        if isinstance(content, str):
            parts.append(content)
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, str):
                parts.append(arguments)
