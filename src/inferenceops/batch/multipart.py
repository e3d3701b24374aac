"""A streaming ``multipart/form-data`` parser (RFC 7578 over RFC 2046): chunks in, events out.

An upload is up to 200 MB, so it is never held whole: ``MultipartParser.feed`` takes the
body as it arrives and returns what it could parse — a part's start (its name, filename
and content type), pieces of its data, its end. Memory stays bounded: body data leaves as
soon as it cannot be the start of a delimiter (at most one chunk plus a delimiter's
length is held), a part's headers may take ``MAX_HEADER_BYTES``, and the preamble is
scanned and dropped (at most ``MAX_PREAMBLE_BYTES`` of it).

Why our own and not python-multipart: it is ~200 lines with no dependency to pin, and
every malformed input — no boundary, a part without headers, a truncated body, bytes
after a delimiter — is an ``InvalidRequest`` that says what is wrong (the tests fuzz it
with hypothesis: any bytes in any chunking either parse or raise that, nothing else).

Pure: no I/O, no knowledge of files or fields; ``batch.upload`` decides what parts mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from urllib.parse import unquote

from inferenceops.errors import InvalidRequest

MAX_HEADER_BYTES = 16 * 1024
MAX_PREAMBLE_BYTES = 64 * 1024
MAX_BOUNDARY = 70  # RFC 2046: 1 to 70 characters
_PADDING_LIMIT = 256  # transport padding allowed between a delimiter and its line end


@dataclass(frozen=True, slots=True)
class PartStart:
    name: str
    filename: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class PartData:
    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd
_END = PartEnd()


class _State(Enum):
    PREAMBLE = 1
    AFTER_DELIMITER = 2
    HEADERS = 3
    BODY = 4
    DONE = 5


def _malformed(what: str) -> InvalidRequest:
    return InvalidRequest(f"The multipart/form-data body is malformed: {what}.",
                          code="invalid_multipart")


def boundary_of(content_type: bytes | None) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; 400 when it is not one."""
    text = (content_type or b"").decode("latin-1")
    kind, _, rest = text.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise InvalidRequest("The request must be multipart/form-data (a 'file' and a 'purpose' "
                             f"field); got Content-Type {text[:100]!r}.",
                             code="invalid_content_type")
    boundary = _params(rest).get("boundary", "")
    if not 1 <= len(boundary) <= MAX_BOUNDARY or not boundary.isascii():
        raise _malformed("its Content-Type names no boundary (1 to 70 ASCII characters)")
    return boundary.encode("ascii")


class MultipartParser:
    """Parses one body; ``feed`` each chunk in order, then ``close`` (see the module doc)."""

    def __init__(self, boundary: bytes) -> None:
        self._delimiter = b"\r\n--" + boundary
        # The first delimiter may open the body with no CRLF before it: pretend there was one.
        self._buf = bytearray(b"\r\n")
        self._state = _State.PREAMBLE
        self._skipped = 0

    @property
    def done(self) -> bool:
        """The closing delimiter was seen (the rest of the body is the epilogue, ignored)."""
        return self._state is _State.DONE

    def feed(self, chunk: bytes) -> list[Event]:
        if self._state is _State.DONE:
            return []
        self._buf += chunk
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def close(self) -> None:
        """The body ended: fine after the closing delimiter, otherwise it was cut short."""
        if self._state is not _State.DONE:
            raise _malformed("it ended before its closing boundary (a truncated upload?)")

    def _step(self, events: list[Event]) -> bool:
        """One move of the state machine; False when it needs more bytes (or is done)."""
        state = self._state
        if state is _State.PREAMBLE:
            return self._preamble()
        if state is _State.AFTER_DELIMITER:
            return self._after_delimiter()
        if state is _State.HEADERS:
            return self._headers(events)
        if state is _State.BODY:
            return self._body(events)
        return False

    def _preamble(self) -> bool:
        buf, delimiter = self._buf, self._delimiter
        at = buf.find(delimiter)
        if at < 0:
            drop = max(0, len(buf) - len(delimiter) + 1)
            self._skipped += drop
            del buf[:drop]
            if self._skipped > MAX_PREAMBLE_BYTES:
                raise _malformed(f"no boundary in its first {MAX_PREAMBLE_BYTES} bytes")
            return False
        del buf[:at + len(delimiter)]
        self._state = _State.AFTER_DELIMITER
        return True

    def _after_delimiter(self) -> bool:
        buf = self._buf
        if len(buf) < 2:
            return False
        if buf[:2] == b"--":
            self._state = _State.DONE
            buf.clear()
            return False
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > _PADDING_LIMIT:
                raise _malformed("a boundary is followed by something other than a line end")
            return False
        if buf[:end].strip(b" \t"):
            raise _malformed("a boundary is followed by something other than a line end")
        del buf[:end + 2]
        self._state = _State.HEADERS
        return True

    def _headers(self, events: list[Event]) -> bool:
        buf = self._buf
        if buf[:2] == b"\r\n":
            raise _malformed("a part has no headers (each needs a Content-Disposition)")
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                raise _malformed(f"a part's headers are longer than {MAX_HEADER_BYTES} bytes")
            return False
        if end > MAX_HEADER_BYTES:
            raise _malformed(f"a part's headers are longer than {MAX_HEADER_BYTES} bytes")
        events.append(_part_start(bytes(buf[:end])))
        del buf[:end + 4]
        self._state = _State.BODY
        return True

    def _body(self, events: list[Event]) -> bool:
        buf, delimiter = self._buf, self._delimiter
        at = buf.find(delimiter)
        if at < 0:
            keep = len(delimiter) - 1  # the tail may be the start of a delimiter
            if len(buf) > keep:
                events.append(PartData(bytes(buf[:len(buf) - keep])))
                del buf[:len(buf) - keep]
            return False
        if at:
            events.append(PartData(bytes(buf[:at])))
        events.append(_END)
        del buf[:at + len(delimiter)]
        self._state = _State.AFTER_DELIMITER
        return True


def _part_start(raw: bytes) -> PartStart:
    headers: dict[str, str] = {}
    for line in raw.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise _malformed("a part header is not 'Name: value'")
        headers[name.strip().lower().decode("latin-1")] = _text(value.strip())
    disposition = headers.get("content-disposition")
    if disposition is None:
        raise _malformed("a part has no Content-Disposition header")
    kind, _, rest = disposition.partition(";")
    params = _params(rest)
    if kind.strip().lower() != "form-data" or "name" not in params:
        raise _malformed("a part's Content-Disposition is not 'form-data' with a name")
    filename = params.get("filename*")
    if filename is not None:  # RFC 5987: charset'language'percent-encoded
        charset, _, encoded = filename.partition("'")
        encoded = encoded.partition("'")[2]
        filename = unquote(encoded, encoding=charset or "utf-8", errors="replace") \
            if charset.lower() in ("utf-8", "iso-8859-1", "") else None
    if filename is None:
        filename = params.get("filename")
    return PartStart(params["name"], filename, headers.get("content-type"))


def _text(value: bytes) -> str:
    """Header text: UTF-8 as browsers and SDKs send it, else Latin-1 (never an error)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _params(text: str) -> dict[str, str]:
    """``; a=1; b="x;\\"y"`` → ``{"a": "1", "b": 'x;"y'}`` (names lower-cased, first one wins)."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t;":
            i += 1
        start = i
        while i < n and text[i] not in "=;":
            i += 1
        name = text[start:i].strip().lower()
        value = ""
        if i < n and text[i] == "=":
            i += 1
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] == '"':
                i += 1
                chars: list[str] = []
                while i < n and text[i] != '"':
                    if text[i] == "\\" and i + 1 < n:
                        i += 1
                    chars.append(text[i])
                    i += 1
                i += 1  # the closing quote (or the end)
                value = "".join(chars)
            else:
                start = i
                while i < n and text[i] != ";":
                    i += 1
                value = text[start:i].strip()
        if name:
            params.setdefault(name, value)
    return params
