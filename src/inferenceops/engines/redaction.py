"""Keeps secrets out of what an engine says back: provider keys, and anything shaped like one.

An engine that echoes its request headers in an error (some do when they
dislike an ``Authorization``) would hand the platform's provider key to
whichever team made the call. So every word of an engine that may reach a
client or the log — error bodies, in-band error events of a stream — passes
through a ``Redactor`` first. It replaces with ``[REDACTED]``:

- every provider key this process has sent (``OpenAICompatClient.sync`` adds
  them; a rotated-away key stays known, as a request in flight may still echo
  it), written literally or JSON-escaped in any mix (``\\u0073k-…``, ``\\/``),
  as an engine that dumps headers into a JSON string would write it;
- anything shaped like a credential: the value of a ``Bearer``/``Basic``
  scheme; the value after an ``Authorization``, ``x-api-key``, ``api_key``,
  ``token``, ``secret`` or ``password`` label; and well-known key shapes
  (``sk-…``, ``AKIA…``, ``ghp_…``, ``hf_…``, ``xox?-…``, ``AIza…``, JWTs).

Matching runs on the text with JSON escapes decoded (so an escaped key is
found) and on the text as written; each match is cut from the text as
written, overlapping matches merged, so what is left holds no whole known key.

Cost: nothing on a successful answer. ``SSEErrorScrubber`` looks at each
streamed chunk for an error marker (substring scans, in C) and redacts only
events that carry one. Nothing here imports the gateway or does I/O.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable

MARK = "[REDACTED]"

# JSON string escapes: \uXXXX (a surrogate pair is two of them) and the short ones.
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|([\"\\/bfnrt]))")
_SHORT = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# Credential shapes. Each regex starts with a literal or a small character set, so the
# regex engine skips ahead in C (one combined alternation is ~20x slower on a long text).
# A scheme keeps its name ("Bearer [REDACTED]"), so the message still says what was there.
_SCHEME = re.compile(r"(?i)(?:bearer|basic)\s+([a-z0-9._~+/=-]{8,})")
# The value after a label: labels are found with str.find in the lowered text (a regex
# alternation of them is slow on long texts), then the separator and value are matched.
_LABELS = ("authorization", "api-key", "api_key", "apikey", "token", "secret", "password")
_AFTER_LABEL = re.compile(r"[\"']?\s*[:=]\s*[\"']?(?:[A-Za-z]+\s+)?([^\s\"',;&()<>}\]]{8,})")
_KEY_SHAPES = tuple(re.compile(p) for p in (
    r"sk-[A-Za-z0-9_-]{16,}", r"pk-[A-Za-z0-9_-]{16,}", r"rk-[A-Za-z0-9_-]{16,}",
    r"sk_(?:live|test)_[A-Za-z0-9]{16,}", r"AKIA[0-9A-Z]{16}", r"AIza[0-9A-Za-z_-]{35}",
    r"gh[pousr]_[A-Za-z0-9]{30,}", r"github_pat_[A-Za-z0-9_]{22,}",
    r"xox[abprs]-[A-Za-z0-9-]{10,}", r"hf_[A-Za-z0-9]{30,}",
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
))


class Redactor:
    """Cuts known secrets and credential-shaped strings out of text. Immutable; cheap to share."""

    __slots__ = ("_secrets", "margin")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: frozenset[str] = frozenset(s for s in secrets if s)
        #: The longest a secret can be once JSON-escaped (12 characters per character at most):
        #: how much of the end of a cut-off text may hold part of one.
        self.margin = 12 * max((len(s) for s in self._secrets), default=0) + 64

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        """This redactor, also knowing ``secrets`` (itself when none of them is new)."""
        new = frozenset(s for s in secrets if s) - self._secrets
        return Redactor(self._secrets | new) if new else self

    def text(self, value: str, *, cut_off: bool = False) -> str:
        """``value`` without secrets. ``cut_off``: the text was cut short (its end may hold
        the start of a secret, which no rule can recognise), so the end is dropped too."""
        canonical, escapes = _unescape(value) if "\\" in value else (value, [])
        spans = self._spans(canonical)
        if escapes:  # found in the decoded text: mapped back; and as written (a key with a "\")
            spans = [(_written(start, escapes), _written(end, escapes)) for start, end in spans]
            spans += self._spans(value)
        out = _cut(value, spans) if spans else value
        if cut_off:
            out = out[:max(0, len(out) - self.margin)]
        return out

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """Where each known secret and each credential shape is in ``text``."""
        spans: list[tuple[int, int]] = []
        for secret in self._secrets:
            start = text.find(secret)
            while start != -1:
                spans.append((start, start + len(secret)))
                start = text.find(secret, start + 1)
        spans.extend(m.span(1) for m in _SCHEME.finditer(text))
        lowered = text.lower()
        if len(lowered) != len(text):  # a few characters lower to two: keep positions aligned
            lowered = "".join(c.lower() if c.isascii() else c for c in text)
        for label in _LABELS:
            found = lowered.find(label)
            while found != -1:
                value = _AFTER_LABEL.match(text, found + len(label))
                if value:
                    spans.append(value.span(1))
                found = lowered.find(label, found + 1)
        for shape in _KEY_SHAPES:
            for m in shape.finditer(text):
                start = m.start()
                if start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_"):
                    spans.append(m.span())
        return spans

    def raw(self, data: bytes) -> bytes:
        """Bytes (e.g. SSE events) without secrets; bytes that are not UTF-8 are kept as they are."""
        text = data.decode("utf-8", "surrogateescape")
        return self.text(text).encode("utf-8", "surrogateescape")


def _unescape(value: str) -> tuple[str, list[tuple[int, int]]]:
    """``value`` with JSON escapes decoded, and where it shrank.

    The second item lists, for each decoded escape, (its index in the decoded
    text, the cumulative number of characters saved up to and including it):
    enough to map a position back to the text as written.
    """
    parts: list[str] = []
    escapes: list[tuple[int, int]] = []
    saved = 0
    last = 0
    length = 0
    matches = list(_ESCAPE.finditer(value))
    i = 0
    while i < len(matches):
        m = matches[i]
        parts.append(value[last:m.start()])
        length += m.start() - last
        written = m.end() - m.start()
        if m.group(1) is not None:
            code = int(m.group(1), 16)
            nxt = matches[i + 1] if i + 1 < len(matches) else None
            if 0xD800 <= code < 0xDC00 and nxt is not None and nxt.start() == m.end() \
                    and nxt.group(1) is not None and 0xDC00 <= int(nxt.group(1), 16) < 0xE000:
                low = int(nxt.group(1), 16)
                char = chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
                written += nxt.end() - nxt.start()
                i += 1
                m = nxt
            else:
                char = chr(code)
        else:
            char = _SHORT[m.group(2)]
        parts.append(char)
        saved += written - 1
        escapes.append((length, saved))
        length += 1
        last = m.end()
        i += 1
    parts.append(value[last:])
    return "".join(parts), escapes


def _written(position: int, escapes: list[tuple[int, int]]) -> int:
    """Where decoded ``position`` is in the text as written (escapes before it count in full)."""
    i = bisect_left(escapes, (position, -1))  # escapes at indices < position
    return position + (escapes[i - 1][1] if i else 0)


def _cut(value: str, spans: list[tuple[int, int]]) -> str:
    """``value`` with each span (merged where they overlap or touch) replaced by ``MARK``."""
    spans.sort()
    out: list[str] = []
    last = 0
    start, end = spans[0]
    for s, e in spans[1:]:
        if s <= end:
            end = max(end, e)
            continue
        out += (value[last:start], MARK)
        last, (start, end) = end, (s, e)
    out += (value[last:start], MARK, value[end:])
    return "".join(out)


_EVENT_ENDS = (b"\n\n", b"\r\n\r\n")
_MAX_HELD = 1024 * 1024


class SSEErrorScrubber:
    """Redacts the error events of a streamed answer; every other event passes untouched.

    Events are passed on whole (a partial one waits for its end, as ``UsageTap``
    does), so a secret split across network chunks is still seen in one piece.
    An event counts as an error when it has an ``"error"`` member or is
    llama.cpp's ``error:`` line. A content delta cannot fake the marker: a
    quote inside generated text arrives escaped (``\\"error\\"``).
    """

    __slots__ = ("_redactor", "_pending", "_discarding")

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._pending = b""
        self._discarding = False  # inside an over-long error event, dropped whole

    def feed(self, chunk: bytes) -> bytes:
        """What to pass on for ``chunk``: whole events only, error events redacted."""
        if not self._pending and not self._discarding and chunk.endswith(b"\n\n"):
            if chunk.find(b"error") == -1:  # the common case: whole events, no error marker
                return chunk
            return self._redactor.raw(chunk) if _is_error(chunk) else chunk
        data = self._pending + chunk
        if self._discarding:
            cut = _event_end(data, first=True)
            if cut == -1:
                self._pending = data[-3:]  # an end may straddle two chunks
                return b""
            self._discarding, data = False, data[cut:]
        cut = _event_end(data)
        if cut == -1:
            if len(data) > _MAX_HELD:  # not an event stream as we know it: stop holding
                self._pending = b""
                if _is_error(data):  # its end may carry the rest of a secret: drop it all
                    self._discarding = True
                    return b""
                return data
            self._pending = data
            return b""
        complete, self._pending = data[:cut], data[cut:]
        return self._redactor.raw(complete) if _is_error(complete) else complete

    def flush(self) -> bytes:
        """What is still held when the stream ends (an unterminated last event)."""
        pending, self._pending = self._pending, b""
        if self._discarding or not pending:
            return b""
        return self._redactor.raw(pending) if _is_error(pending) else pending


def _is_error(data: bytes) -> bool:
    if data.find(b"error") == -1:  # one scan settles almost every chunk
        return False
    return b'"error"' in data or data.startswith(b"error:") or b"\nerror:" in data


def _event_end(data: bytes, *, first: bool = False) -> int:
    """The index just past the last (or first) complete event in ``data``; -1 when none."""
    ends = [i + len(end) for end in _EVENT_ENDS
            if (i := data.find(end) if first else data.rfind(end)) != -1]
    if not ends:
        return -1
    return min(ends) if first else max(ends)
