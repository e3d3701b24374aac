"""What a batch input file must hold, checked line by line as its bytes stream in.

A batch file is JSON Lines, one request per line, in OpenAI's shape::

    {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

``LineChecker.feed`` takes the upload's bytes in any chunking and checks each complete
line as it ends, so a 200 MB file is checked without being held: only the current line
(at most ``max_line_bytes``) and the ``custom_id``s seen so far (to refuse a repeat) are
kept. The first broken rule raises ``InvalidFile`` naming the line (1-based, counting
every physical line) in its message and in ``extra["line"]``; the upload stops there.

Blank lines are allowed and skipped (a trailing newline, or a blank line between
requests, is not worth refusing a large file for); ``line_count`` counts requests.
A line may end in ``\\r\\n``. Bad UTF-8 is bad JSON. Pure: no I/O.
"""

from __future__ import annotations

from typing import NoReturn

import orjson

from inferenceops.errors import InvalidFile

#: The endpoints a batch request may name (issue #12).
BATCH_URLS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MAX_CUSTOM_ID_CHARS = 512
_PARAM = "file"


class LineChecker:
    """Checks one batch file's lines (see the module doc)."""

    def __init__(self, *, max_lines: int, max_line_bytes: int) -> None:
        self.max_lines = max_lines
        self.max_line_bytes = max_line_bytes
        self.line_count = 0  # requests seen (blank lines not counted)
        self._line_no = 0  # physical lines ended so far
        self._partial = bytearray()
        self._custom_ids: dict[str, int] = {}

    def feed(self, data: bytes) -> None:
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._partial:
                self._partial += data[start:end]
                self._check_length(len(self._partial))
                line = bytes(self._partial)
                self._partial.clear()
            else:
                self._check_length(end - start)
                line = data[start:end]
            self._line(line)
            start = end + 1
        if start < len(data):
            self._partial += data[start:]
            self._check_length(len(self._partial))

    def finish(self) -> int:
        """The file ended: checks a last line without a newline; returns the request count."""
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._line(line)
        if self.line_count == 0:
            raise InvalidFile("The file holds no requests: a batch file has one JSON request "
                              "per line.", param=_PARAM)
        return self.line_count

    def _check_length(self, size: int) -> None:
        if size > self.max_line_bytes:
            self._fail(self._line_no + 1, f"is longer than {self.max_line_bytes} bytes")

    def _line(self, raw: bytes) -> None:
        self._line_no += 1
        if not raw.strip():
            return
        self.line_count += 1
        if self.line_count > self.max_lines:
            raise InvalidFile(f"The file has more than {self.max_lines} requests (line "
                              f"{self._line_no}); split it into several batches.",
                              param=_PARAM, extra={"line": self._line_no})
        self._request(raw)

    def _request(self, raw: bytes) -> None:
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._fail(self._line_no, "is not valid JSON (UTF-8)")
        if not isinstance(request, dict):
            self._fail(self._line_no, "is not a JSON object")
        custom_id = request.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            self._fail(self._line_no, "needs a 'custom_id': a non-empty string")
        if len(custom_id) > MAX_CUSTOM_ID_CHARS:
            self._fail(self._line_no, f"has a 'custom_id' longer than {MAX_CUSTOM_ID_CHARS} "
                       "characters")
        if request.get("method") != "POST":
            self._fail(self._line_no, "needs \"method\": \"POST\"")
        url = request.get("url")
        if url not in BATCH_URLS:
            self._fail(self._line_no, f"has 'url' {_shown(url)}; use one of {', '.join(BATCH_URLS)}")
        if not isinstance(request.get("body"), dict):
            self._fail(self._line_no, "needs a 'body': the request as a JSON object")
        first = self._custom_ids.setdefault(custom_id, self._line_no)
        if first != self._line_no:
            self._fail(self._line_no, f"repeats the custom_id {_shown(custom_id)} of line {first}")

    def _fail(self, line: int, what: str) -> NoReturn:
        raise InvalidFile(f"Line {line} of the file {what}.", param=_PARAM, extra={"line": line})


def _shown(value: object) -> str:
    """A value from the file, as JSON, cut short enough for an error message."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
