"""Secrets never leave in an engine's words: known keys however written, credential shapes, and
error events of a stream, while everything that is not a secret passes unchanged."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferenceops.engines.redaction import MARK, Redactor, SSEErrorScrubber

KEY = "sk-upstream-7Hq2/xZ+9v=="
OTHER = "prov-key-ÅÅ😀-0123456789"


def escaped(text: str) -> str:
    """Every character as a JSON \\u escape (a surrogate pair for those past the BMP)."""
    return "".join(f"\\u{unit:04x}" for c in text for unit in _utf16(c))


def _utf16(char: str) -> list[int]:
    data = char.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


@pytest.mark.parametrize("written", [
    KEY,
    escaped(KEY),
    KEY.replace("/", "\\/"),
    OTHER,
    escaped(OTHER),
    escaped(OTHER[:5]) + OTHER[5:],
])
def test_a_known_key_is_cut_however_it_is_written(written: str) -> None:
    redactor = Redactor([KEY, OTHER])
    out = redactor.text(f"bad header: {written}. Try again")
    assert out == f"bad header: {MARK}. Try again"


def test_overlapping_keys_are_cut_as_one_and_nothing_of_either_remains() -> None:
    redactor = Redactor(["abcdefgh1234", "1234wxyz5678"])
    assert redactor.text("x abcdefgh1234wxyz5678 y") == f"x {MARK} y"


@pytest.mark.parametrize(("text", "expected"), [
    ("Authorization: Bearer tok_0123456789abcdef", f"Authorization: Bearer {MARK}"),
    ("auth was basic dXNlcjpwYXNzd29yZA==", f"auth was basic {MARK}"),
    ('{"X-Api-Key": "0123456789abcdef"}', f'{{"X-Api-Key": "{MARK}"}}'),
    ("api_key=abcdefgh12345678&x=1", f"api_key={MARK}&x=1"),
    ("Authorization: Token abcdef0123456789", f"Authorization: Token {MARK}"),
    ("password: 'hunter2hunter2'", f"password: '{MARK}'"),
    ("keys sk-proj-abcdefghijklmnopqrst and AKIAABCDEFGHIJKLMNOP", f"keys {MARK} and {MARK}"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2ln", f"jwt {MARK}"),
])
def test_credential_shapes_are_cut_and_their_labels_kept(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


@pytest.mark.parametrize("text", [
    "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.",
    "'max_tokens' must be at most 4096; got 5000 (max_tokens: 5000)",
    "task-0123456789abcdef0123 failed: connection refused",
    "C:\\new\\table is not a path we serve",
])
def test_ordinary_messages_pass_unchanged(text: str) -> None:
    assert Redactor([KEY]).text(text) == text


def test_a_cut_off_text_loses_its_end_where_part_of_a_key_may_hide() -> None:
    redactor = Redactor([KEY])
    text = "x" * 500 + KEY[:10]  # the body was cut in the middle of the key
    out = redactor.text(text, cut_off=True)
    assert KEY[:4] not in out and out == "x" * (len(text) - redactor.margin)


def test_with_secrets_is_the_same_redactor_when_nothing_is_new() -> None:
    redactor = Redactor([KEY])
    assert redactor.with_secrets([KEY, ""]) is redactor
    assert redactor.with_secrets([OTHER]).text(OTHER + KEY) == MARK


# --- streams ------------------------------------------------------------------------------

CONTENT = b'data: {"choices":[{"delta":{"content":"the \\"error\\" word is fine"}}]}\n\n'


def test_content_events_pass_as_the_same_bytes() -> None:
    scrubber = SSEErrorScrubber(Redactor([KEY]))
    assert scrubber.feed(CONTENT) is CONTENT
    assert scrubber.flush() == b""


def test_an_error_event_split_inside_the_key_is_held_whole_and_redacted() -> None:
    event = b'data: ' + orjson.dumps({"error": {"message": f"Authorization: Bearer {KEY}"}}) + b"\n\n"
    cut = event.index(KEY.encode()) + 5
    scrubber = SSEErrorScrubber(Redactor([KEY]))
    first = scrubber.feed(CONTENT + event[:cut])
    assert first == CONTENT  # the finished event goes at once; the partial one waits
    out = first + scrubber.feed(event[cut:]) + scrubber.flush()
    assert KEY.encode() not in out
    assert orjson.loads(out[len(CONTENT) + 6:])["error"]["message"] == f"Authorization: Bearer {MARK}"


@pytest.mark.parametrize("event", [
    b"error: {\"code\":500,\"message\":\"Authorization: Bearer " + KEY.encode() + b"\"}\r\n\r\n",
    b"event: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"" + KEY.encode() + b"\"}}",
])
def test_other_error_event_forms_are_redacted(event: bytes) -> None:
    scrubber = SSEErrorScrubber(Redactor([KEY]))
    out = scrubber.feed(event) + scrubber.flush()
    assert KEY.encode() not in out and MARK.encode() in out


def test_an_error_event_without_an_end_past_the_limit_is_dropped_to_its_end() -> None:
    scrubber = SSEErrorScrubber(Redactor([KEY]))
    head = b'data: {"error": {"message": "' + b"x" * (1024 * 1024) + KEY.encode()[:6]
    assert scrubber.feed(head) == b""
    assert scrubber.feed(KEY.encode()[6:] + b'"}}\n') == b""
    assert scrubber.feed(b"\n" + CONTENT) == CONTENT


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from("abcdefXYZ0123456789-_./+=é中😀"), min_size=12, max_size=40),
       st.lists(st.integers(min_value=1, max_value=400), max_size=12), st.booleans())
def test_any_chunking_of_a_stream_leaks_no_key_and_changes_no_content(
        key: str, cuts: list[int], escape: bool) -> None:
    written = escaped(key) if escape else key
    error = b'data: {"error": {"message": "Bearer ' + written.encode() + b'"}}\n\n'
    stream = CONTENT * 3 + error + CONTENT
    scrubber = SSEErrorScrubber(Redactor([key]))
    out, at = b"", 0
    for cut in sorted(cuts):
        out += scrubber.feed(stream[at:cut]) if cut > at else b""
        at = max(at, cut)
    out += scrubber.feed(stream[at:]) + scrubber.flush()
    assert key.encode() not in out and written.encode() not in out
    assert out.startswith(CONTENT * 3) and out.endswith(CONTENT)
    assert orjson.loads(out[len(CONTENT) * 3 + 6:-len(CONTENT)])["error"]["message"] == \
        f"Bearer {MARK}"
