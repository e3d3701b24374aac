"""Batch file lines: each rule refused naming its line; the verdict is the same in any
chunking; garbage, huge lines and bad UTF-8 are an ``InvalidFile``, never anything else."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferenceops.batch.file_lines import BATCH_URLS, LineChecker
from inferenceops.errors import InvalidFile

FUZZ = settings(max_examples=300, deadline=None)


def line(custom_id: object = "r1", *, method: object = "POST", url: object = BATCH_URLS[0],
         body: object = None, **extra: object) -> bytes:
    request = {"custom_id": custom_id, "method": method, "url": url,
               "body": {"model": "m"} if body is None else body, **extra}
    return orjson.dumps(request) + b"\n"


def check(data: bytes, *, cuts: tuple[int, ...] = (), max_lines: int = 10,
          max_line_bytes: int = 1000) -> int:
    checker = LineChecker(max_lines=max_lines, max_line_bytes=max_line_bytes)
    positions = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in zip(positions, positions[1:], strict=False):
        checker.feed(data[start:end])
    return checker.finish()


def refusal(data: bytes, **kw: int) -> InvalidFile:
    with pytest.raises(InvalidFile) as caught:
        check(data, **kw)
    assert caught.value.param == "file" and caught.value.status == 400
    return caught.value


def test_good_lines_are_counted_blank_lines_skipped_crlf_and_no_final_newline_fine() -> None:
    assert check(line("a") + b"\n  \n" + line("b").replace(b"\n", b"\r\n") + line("c")[:-1]) == 3
    for url in BATCH_URLS:
        assert check(line(url=url)) == 1


@pytest.mark.parametrize(("data", "number", "says"), [
    (b"{nope\n", 1, "not valid JSON"),
    (line("a") + b"\xff\xfe\n", 2, "not valid JSON"),
    (line("a") + b"\n" + b"42\n", 3, "not a JSON object"),
    (line(None), 1, "custom_id"), (line(""), 1, "custom_id"), (line(7), 1, "custom_id"),
    (line("x" * 513), 1, "longer than 512"),
    (line(method="GET"), 1, "POST"),
    (line(url="/v1/models"), 1, "'url' \"/v1/models\""), (line(url=None), 1, "'url'"),
    (line(body=[1]), 1, "'body'"), (line(body="x"), 1, "'body'"),
    (line("a") + line("b") + line("a"), 3, "repeats the custom_id \"a\" of line 1"),
])
def test_each_rule_is_refused_naming_the_line(data: bytes, number: int, says: str) -> None:
    error = refusal(data)
    assert error.extra["line"] == number
    assert f"Line {number} " in error.message and says in error.message


def test_line_and_request_limits() -> None:
    assert refusal(line("a") + b"x" * 2000).extra["line"] == 2
    assert refusal(b"".join(line(f"r{i}") for i in range(11))).extra["line"] == 11
    assert "no requests" in refusal(b"\n\n \n").message


def test_a_huge_line_is_refused_before_it_is_held() -> None:
    checker = LineChecker(max_lines=10, max_line_bytes=1000)
    checker.feed(b"{" + b"a" * 500)
    with pytest.raises(InvalidFile):
        checker.feed(b"a" * 600)  # no newline yet: refused as soon as it is too long


@FUZZ
@given(ids=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=8),
       cuts=st.lists(st.integers(0, 5000), max_size=10))
def test_the_verdict_does_not_depend_on_chunking(ids: list[str], cuts: list[int]) -> None:
    data = b"".join(line(i) for i in ids)
    whole: object
    try:
        whole = check(data)
    except InvalidFile as error:
        whole = error.message
    try:
        chunked: object = check(data, cuts=tuple(cuts))
    except InvalidFile as error:
        chunked = error.message
    assert whole == chunked
    assert (whole == len(ids)) == (len(set(ids)) == len(ids))


@FUZZ
@given(data=st.binary(max_size=3000) | st.lists(st.sampled_from(
    [line("a"), line("b"), b"\n", b"\r\n", b"{", b"}", b'"custom_id"', b"\xff", b"null",
     b'{"custom_id": "q", "method": "POST"}', b"x" * 600]), max_size=12).map(b"".join),
       cuts=st.lists(st.integers(0, 3000), max_size=6))
def test_garbage_is_an_invalid_file_or_fine_never_another_error(data: bytes,
                                                                cuts: list[int]) -> None:
    try:
        check(data, cuts=tuple(cuts))
    except InvalidFile as error:
        assert error.param == "file"
