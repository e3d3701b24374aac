"""Streamed redaction: however the engine splits the text, the client reads the same
redacted text, and no entity gets out whole or in part."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from inferenceops.guardrails.detect import redact, scan
from inferenceops.guardrails.stream import StreamRedactor

ENTITY_VALUES = ["anna.k+eu@mail.example.co.uk", "4242 4242 4242 4242", "4242424242424242",
                 "DE89 3704 0044 0532 0130 00", "+44 20 7946 0958", "078-05-1120",
                 "AKIAIOSFODNN7EXAMPLE", "password: Tr0ub4dor&3x", "203.0.113.7",
                 "sk-proj-Xk2lP9qW8eR7tY6uI5oP4aS3dF2g", "(212) 555-0187"]
WORDS = ["the", "card", "is", "my", "email", "call", "me", "at", "and", "then", "ok.", "Hello,",
         "IBAN", "Use", "42", "2024", "A", "B2"]


def chunk(doc: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(doc) + b"\n\n"


def chat_events(pieces: list[str]) -> list[bytes]:
    base = {"id": "c1", "object": "chat.completion.chunk", "model": "m"}
    events = [chunk({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})]
    events += [chunk({**base, "choices": [{"index": 0, "delta": {"content": p}}]}) for p in pieces]
    events.append(chunk({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    events.append(b"data: [DONE]\n\n")
    return events


def read_text(stream: bytes) -> str:
    text = []
    for event in stream.split(b"\n\n"):
        if event.startswith(b"data: {"):
            for choice in orjson.loads(event[6:])["choices"]:
                text.append(choice.get("delta", {}).get("content") or choice.get("text") or "")
    return "".join(text)


def run(events: list[bytes], network_splits: list[int] | None = None) -> bytes:
    f = StreamRedactor()
    data = b"".join(events)
    if network_splits is None:
        return b"".join(f.feed(e) for e in events) + f.flush()
    out, at = [], 0
    for cut in sorted(set(network_splits)) + [len(data)]:
        out.append(f.feed(data[at:cut]))
        at = cut
    return b"".join(out) + f.flush()


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True) if b > a]


_TEXTS = st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(ENTITY_VALUES)),
                  min_size=1, max_size=12).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(_TEXTS, st.lists(st.integers(0, 400), max_size=40))
def test_any_split_gives_the_redaction_of_the_whole_text(text: str, cuts: list[int]) -> None:
    streamed = read_text(run(chat_events(split(text, cuts))))
    assert streamed == redact(text, scan(text))
    for value in ENTITY_VALUES:
        assert value not in streamed


@settings(max_examples=100, deadline=None)
@given(_TEXTS, st.lists(st.integers(0, 400), max_size=20), st.lists(st.integers(0, 3000),
                                                                     max_size=30))
def test_events_split_across_network_chunks_read_the_same(text: str, cuts: list[int],
                                                          net: list[int]) -> None:
    events = chat_events(split(text, cuts))
    assert read_text(run(events, net)) == read_text(run(events))


def test_prose_goes_out_as_it_comes_and_an_entity_in_progress_is_held() -> None:
    f = StreamRedactor()
    first = f.feed(chat_events(["Hello there, my card is 4242 "])[1])
    assert read_text(first) == "Hello there, my card is "
    rest = b"".join(f.feed(e) for e in chat_events(["4242 4242 4242 and more"])[1:]) + f.flush()
    assert read_text(first + rest) == "Hello there, my card is [CARD] and more"


def test_roles_finish_reasons_and_other_events_pass_as_they_were() -> None:
    events = chat_events(["hi ", "anna@example.com"])
    out = run([b": keep-alive\n\n", *events])
    assert out.startswith(b": keep-alive\n\n")
    docs = [orjson.loads(e[6:]) for e in out.split(b"\n\n") if e.startswith(b"data: {")]
    assert docs[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert docs[-1]["choices"][0]["finish_reason"] == "stop"
    assert out.endswith(b"data: [DONE]\n\n")
    assert read_text(out) == "hi [EMAIL]"


def test_a_stream_cut_before_its_end_lets_out_what_was_held_redacted() -> None:
    f = StreamRedactor()
    events = chat_events(["my key AKIAIOSFODNN7", "EXAMPLE"])[:3]  # no finish, no [DONE]
    out = b"".join(f.feed(e) for e in events) + f.flush()
    assert read_text(out) == "my key [SECRET]"


def test_completions_text_is_redacted_too() -> None:
    f = StreamRedactor()
    docs = [{"object": "text_completion", "choices": [{"index": 0, "text": t}]}
            for t in ("mail me at ann", "a@example.org now")]
    out = b"".join(f.feed(chunk(d)) for d in docs) + f.flush()
    assert read_text(out) == "mail me at [EMAIL] now"


def test_a_private_key_block_goes_out_as_one_placeholder() -> None:
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn\n" \
          "-----END RSA PRIVATE KEY-----"
    text = f"here: {key} done"
    for size in (3, 7, 16):
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
        assert read_text(run(chat_events(pieces))) == "here: [SECRET] done"
