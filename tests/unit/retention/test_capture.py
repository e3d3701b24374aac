"""The stream capture of a team that keeps bodies: bounded, transparent, and read back as text."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from inferenceops.retention.capture import StreamCapture, stream_answer


def sse(pieces: list[str], *, chat: bool = True) -> bytes:
    events = []
    for piece in pieces:
        choice = {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
        events.append(b"data: " + orjson.dumps({"choices": [choice]}) + b"\n\n")
    return b"".join(events) + b"data: [DONE]\n\n"


def cuts(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """Every way of splitting ``data`` into chunks."""
    return st.lists(st.integers(0, len(data)), max_size=8).map(
        lambda points: [data[a:b] for a, b in zip([0, *sorted(points)], [*sorted(points), len(data)],
                                                  strict=True)])


@given(data=st.data(), raw=st.binary(max_size=300), limit=st.integers(0, 400))
def test_the_capture_passes_every_chunk_untouched_and_keeps_a_bounded_prefix(
        data: st.DataObject, raw: bytes, limit: int) -> None:
    chunks = data.draw(cuts(raw))
    capture = StreamCapture(limit)
    assert [capture.feed(c) for c in chunks] == chunks  # the caller's stream is not changed
    assert capture.flush() == b""
    assert capture.captured() == raw[:limit]
    assert capture.truncated == (len(raw) > limit)


@given(pieces=st.lists(st.text(max_size=12), max_size=20), chat=st.booleans())
def test_a_captured_stream_reads_back_as_the_text_its_events_carried(pieces: list[str],
                                                                     chat: bool) -> None:
    answer = stream_answer(sse(pieces, chat=chat))
    assert answer["choices"] == ([{"index": 0, "text": "".join(pieces)}] if pieces else [])


def test_choices_and_tool_call_arguments_are_kept_apart_by_index() -> None:
    events = [{"choices": [{"index": 1, "delta": {"content": "b"}}]},
              {"choices": [{"index": 0, "delta": {"tool_calls": [
                  {"index": 0, "function": {"name": "f", "arguments": '{"to": "x'}}]}}]},
              {"choices": [{"index": 0, "delta": {"tool_calls": [
                  {"index": 0, "function": {"arguments": '@y.z"}'}}]}}]},
              {"choices": "not a list"}, [1, 2], {"choices": [{"index": "one"}, 7]}]
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: {broken\n\n"
    assert stream_answer(raw)["choices"] == [{"index": 0, "text": '{"to": "x@y.z"}'},
                                             {"index": 1, "text": "b"}]


def test_a_cut_capture_keeps_whole_words_only() -> None:
    raw = sse(["write to anna@exam"])
    assert stream_answer(raw, truncated=True)["choices"] == [{"index": 0, "text": "write to"}]
    assert stream_answer(sse(["nospace"]), truncated=True)["choices"] == [{"index": 0, "text": ""}]
