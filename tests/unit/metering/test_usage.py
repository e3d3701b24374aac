"""Usage is read from answers without changing what the client receives."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from inferenceops.metering.usage import (
    Usage,
    UsageTap,
    parse_usage,
    request_stream_usage,
    usage_from_body,
)


def event(doc: object) -> bytes:
    return b"data: " + orjson.dumps(doc) + b"\n\n"


CONTENT = [event({"choices": [{"index": 0, "delta": {"content": f"t{i}"}}], "usage": None})
           for i in range(3)]
USAGE = event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3,
                                        "total_tokens": 10}})
DONE = b"data: [DONE]\n\n"


def test_usage_of_a_whole_answer() -> None:
    body = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    assert usage_from_body(body) == Usage(5, 2)
    assert usage_from_body(b'{"usage": {"prompt_tokens": -1}}') is None
    assert usage_from_body(b"not json, but says \"usage\"") is None
    assert usage_from_body(b"{}") is None


def test_cached_prompt_tokens_are_read_when_the_engine_reports_them() -> None:
    """vLLM and OpenAI report prefix-cache hits in prompt_tokens_details.cached_tokens."""
    def usage(details: object) -> Usage | None:
        return parse_usage({"prompt_tokens": 10, "completion_tokens": 2,
                            "prompt_tokens_details": details})

    assert usage({"cached_tokens": 8}) == Usage(10, 2, 8)
    assert usage({"cached_tokens": 50}) == Usage(10, 2, 10)  # never more than the prompt
    for junk in (None, {}, {"cached_tokens": -1}, {"cached_tokens": "8"}, {"cached_tokens": True},
                 [8]):
        assert usage(junk) == Usage(10, 2, 0)


def test_a_stream_request_is_made_to_ask_for_usage_unless_it_did() -> None:
    doc: dict = {"stream_options": {"other": 1}}
    assert request_stream_usage(doc) is False
    assert doc["stream_options"] == {"other": 1, "include_usage": True}
    asked: dict = {"stream_options": {"include_usage": True}}
    assert request_stream_usage(asked) is True


def test_chunks_without_usage_pass_through_as_the_same_object() -> None:
    tap = UsageTap(hide_usage_chunk=True)
    for chunk in CONTENT:
        assert tap.feed(chunk) is chunk


def test_the_usage_chunk_is_read_and_hidden_when_the_client_did_not_ask() -> None:
    tap = UsageTap(hide_usage_chunk=True)
    out = b"".join(tap.feed(c) for c in [*CONTENT, USAGE, DONE]) + tap.flush()
    assert out == b"".join([*CONTENT, DONE])
    assert tap.usage == Usage(7, 3)


def test_the_usage_chunk_is_kept_when_the_client_asked() -> None:
    tap = UsageTap(hide_usage_chunk=False)
    out = b"".join(tap.feed(c) for c in [*CONTENT, USAGE, DONE]) + tap.flush()
    assert out == b"".join([*CONTENT, USAGE, DONE])
    assert tap.usage == Usage(7, 3)


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=12), st.booleans())
def test_any_split_of_the_stream_gives_the_same_bytes_and_usage(cuts: list[int], hide: bool) -> None:
    stream = b"".join([*CONTENT, USAGE, DONE])
    pieces, at = [], 0
    for size in cuts:
        pieces.append(stream[at:at + size])
        at += size
    pieces.append(stream[at:])
    tap = UsageTap(hide_usage_chunk=hide)
    out = b"".join(tap.feed(p) for p in pieces if p) + tap.flush()
    assert out == (b"".join([*CONTENT, DONE]) if hide else stream)
    assert tap.usage == Usage(7, 3)


def test_a_stream_cut_short_is_estimated_from_its_content_events() -> None:
    tap = UsageTap(hide_usage_chunk=True)
    role = event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    for chunk in [role, *CONTENT]:
        tap.feed(chunk)
    assert tap.usage is None
    assert tap.estimated_completion_tokens() == 3  # the role event has no content


def test_content_split_across_chunks_is_counted_once_its_event_is_whole() -> None:
    tap = UsageTap(hide_usage_chunk=True)
    stream = b"".join(CONTENT)
    for i in range(0, len(stream), 7):  # every marker cut somewhere
        tap.feed(stream[i:i + 7])
    assert tap.estimated_completion_tokens() == 3


def test_a_usage_object_written_with_spaces_is_read_and_hidden() -> None:
    spaced = b'data: {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}\n\n'
    tap = UsageTap(hide_usage_chunk=True)
    assert tap.feed(CONTENT[0] + spaced + DONE) == CONTENT[0] + DONE
    assert tap.usage == Usage(2, 1)


def test_a_usage_chunk_arriving_with_other_events_is_cut_out_alone() -> None:
    """One read holding content, an empty event, the usage chunk and [DONE]: only the usage
    chunk goes (the rest keeps its bytes, the empty event too)."""
    read = CONTENT[0] + b"\n\n" + USAGE + DONE
    hidden = UsageTap(hide_usage_chunk=True)
    assert hidden.feed(read) == CONTENT[0] + b"\n\n" + DONE
    assert hidden.usage == Usage(7, 3)
    kept = UsageTap(hide_usage_chunk=False)
    assert kept.feed(read) is read  # nothing to cut: the same object goes on
    assert kept.usage == Usage(7, 3)


def test_a_usage_event_that_is_not_json_or_has_choices_is_passed_on() -> None:
    broken = b'data: {"usage":{"prompt_tokens":1, oops\n\n'
    with_choices = event({"choices": [{"index": 0, "delta": {"content": "x"}}],
                          "usage": {"prompt_tokens": 4, "completion_tokens": 1}})
    tap = UsageTap(hide_usage_chunk=True)
    assert tap.feed(broken) == broken
    assert tap.usage is None
    assert tap.feed(with_choices) == with_choices
    assert tap.usage == Usage(4, 1)


def test_the_usage_chunk_goes_by_its_shape_and_is_read_after_the_stream() -> None:
    """``"choices":[]`` with a usage object is the usage chunk: hidden as it passes; its numbers
    are read when asked for. A usage object in every chunk (vLLM's continuous usage stats)
    keeps at most one piece waiting, and the last valid usage is the stream's."""
    tap = UsageTap(hide_usage_chunk=True)
    assert tap.feed(USAGE + DONE) == DONE
    assert tap._unread and tap.usage == Usage(7, 3) and not tap._unread

    running = [event({"choices": [{"index": 0, "delta": {"content": f"t{i}"}}],
                      "usage": {"prompt_tokens": 7, "completion_tokens": i + 1}})
               for i in range(5)]
    for hide in (True, False):
        tap = UsageTap(hide_usage_chunk=hide)
        for chunk in running:
            assert tap.feed(chunk) == chunk  # content with usage: never hidden
            assert len(tap._unread) <= 1
        assert tap.feed(USAGE + DONE) == (DONE if hide else USAGE + DONE)
        assert tap.usage == Usage(7, 3)  # the final usage chunk's, the last valid one
        tap = UsageTap(hide_usage_chunk=hide)
        for chunk in running:
            tap.feed(chunk)
        assert tap.usage == Usage(7, 5)


def test_a_usage_chunk_without_a_choices_member_is_read_at_once_to_decide() -> None:
    bare = event({"usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    tap = UsageTap(hide_usage_chunk=True)
    assert tap.feed(CONTENT[0] + bare + DONE) == CONTENT[0] + DONE
    assert not tap._unread and tap.usage == Usage(3, 2)
