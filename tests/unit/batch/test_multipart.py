"""The streaming multipart parser: what a form holds comes out whole in any chunking, and any
bytes at all either parse or raise ``InvalidRequest`` — never another exception (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferenceops.batch.multipart import (
    MAX_HEADER_BYTES,
    MAX_PREAMBLE_BYTES,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    boundary_of,
)
from inferenceops.errors import InvalidRequest

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def encode(parts: list[tuple[str, str | None, bytes]], boundary: bytes, *,
           preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    out = [preamble + (b"\r\n" if preamble else b"")]
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.append(b"--" + boundary + b"\r\nContent-Disposition: " + disposition.encode()
                   + b"\r\n\r\n" + data + b"\r\n")
    out.append(b"--" + boundary + b"--" + epilogue)
    return b"".join(out)


def parse(body: bytes, boundary: bytes, cuts: list[int]) -> list[tuple[str, str | None, bytes]]:
    parser = MultipartParser(boundary)
    positions = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts)})
    events = []
    for start, end in zip(positions, positions[1:], strict=False):
        events += parser.feed(body[start:end])
    parser.close()
    parts: list[tuple[str, str | None, bytes]] = []
    for event in events:
        if isinstance(event, PartStart):
            parts.append((event.name, event.filename, b""))
        elif isinstance(event, PartData):
            name, filename, data = parts[-1]
            parts[-1] = (name, filename, data + event.data)
        else:
            assert isinstance(event, PartEnd)
    return parts


_names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E,
                               blacklist_characters='"\\'), min_size=1, max_size=12)
_boundaries = st.text(st.sampled_from("abcXYZ0129-_'"), min_size=1, max_size=70)


@FUZZ
@given(parts=st.lists(st.tuples(_names, st.none() | _names, st.binary(max_size=300)), max_size=4),
       boundary=_boundaries, cuts=st.lists(st.integers(0, 10_000), max_size=12),
       preamble=st.binary(max_size=40), epilogue=st.binary(max_size=40))
def test_whatever_a_form_holds_comes_out_whole_in_any_chunking(
        parts: list[tuple[str, str | None, bytes]], boundary: str, cuts: list[int],
        preamble: bytes, epilogue: bytes) -> None:
    delimiter = b"\r\n--" + boundary.encode()
    # A form's writer picks a boundary its data does not contain; so do we.
    if any(delimiter in b"\r\n" + d + b"\r\n" for _, _, d in parts) or delimiter in b"\r\n" + preamble:
        return
    body = encode(parts, boundary.encode(), preamble=preamble, epilogue=epilogue)
    assert parse(body, boundary.encode(), cuts) == parts


@FUZZ
@given(body=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_any_bytes_parse_or_are_a_clean_400(body: bytes, cuts: list[int]) -> None:
    try:
        parse(body, b"bnd", cuts)
    except InvalidRequest as error:
        assert error.status == 400


@FUZZ
@given(body=st.lists(st.sampled_from([
    b"--bnd", b"\r\n", b"--", b"Content-Disposition: form-data; name=\"f\"", b"\r\n\r\n",
    b"filename=\"x\"", b";", b"data", b"\xff", b"--bnd--", b" ", b"Content-Type: a/b"]),
    max_size=30).map(b"".join), cuts=st.lists(st.integers(0, 500), max_size=8))
def test_near_miss_forms_parse_or_are_a_clean_400(body: bytes, cuts: list[int]) -> None:
    try:
        parse(body, b"bnd", cuts)
    except InvalidRequest as error:
        assert error.status == 400


def test_the_sdks_form_parses() -> None:
    body = (b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n{}\n{}\n\r\n--b--\r\n")
    parser = MultipartParser(b"b")
    events = parser.feed(body)
    parser.close()
    assert events[0] == PartStart("purpose", None, None)
    assert events[3] == PartStart("file", "a.jsonl", "application/octet-stream")
    assert events[4:] == [PartData(b"{}\n{}\n"), PartEnd()]


def test_utf8_and_rfc5987_filenames() -> None:
    body = ('--b\r\nContent-Disposition: form-data; name="file"; filename="d\u00e9j\u00e0.jsonl"'
            '\r\n\r\nx\r\n--b\r\nContent-Disposition: form-data; name="g"; filename="a"; '
            "filename*=UTF-8''%E2%82%AC.jsonl\r\n\r\ny\r\n--b--").encode()
    parser = MultipartParser(b"b")
    starts = [e for e in parser.feed(body) if isinstance(e, PartStart)]
    assert [s.filename for s in starts] == ["d\u00e9j\u00e0.jsonl", "\u20ac.jsonl"]


@pytest.mark.parametrize(("body", "says"), [
    (b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nxx", "ended before"),
    (b"", "ended before"),
    (b"--b\r\n\r\nxx\r\n--b--", "no headers"),
    (b"--b\r\nContent-Type: a/b\r\n\r\nxx\r\n--b--", "no Content-Disposition"),
    (b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nxx\r\n--b--", "not 'form-data'"),
    (b"--b\r\nContent-Disposition: form-data\r\n\r\nxx\r\n--b--", "not 'form-data'"),
    (b"--b\r\nno colon here\r\n\r\nxx\r\n--b--", "Name: value"),
    (b"--bjunk\r\n", "something other than a line end"),
    (b"--b\r\nX: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n", "headers are longer"),
    (b"x" * (MAX_PREAMBLE_BYTES + 100), "no boundary"),
])
def test_malformed_forms_say_what_is_wrong(body: bytes, says: str) -> None:
    parser = MultipartParser(b"b")
    with pytest.raises(InvalidRequest) as caught:
        parser.feed(body)
        parser.close()
    assert says in caught.value.message and caught.value.code == "invalid_multipart"


def test_body_data_is_never_held_beyond_a_delimiter_length() -> None:
    parser = MultipartParser(b"b" * 70)
    parser.feed(b"--" + b"b" * 70 + b"\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n")
    for _ in range(100):
        out = parser.feed(b"z" * 65536)
        assert sum(len(e.data) for e in out if isinstance(e, PartData)) >= 65536 - 80
    assert len(parser._buf) < 80


@pytest.mark.parametrize(("header", "boundary"), [
    (b"multipart/form-data; boundary=abc", b"abc"),
    (b'Multipart/Form-Data; charset=utf-8; boundary="a b;c"', b"a b;c"),
])
def test_boundary_of(header: bytes, boundary: bytes) -> None:
    assert boundary_of(header) == boundary


@pytest.mark.parametrize("header", [None, b"", b"application/json", b"multipart/form-data",
                                    b"multipart/form-data; boundary=" + b"x" * 71,
                                    "multipart/form-data; boundary=\u00e9".encode()])
def test_boundary_of_refuses(header: bytes | None) -> None:
    with pytest.raises(InvalidRequest):
        boundary_of(header)
