"""Counting tokens locally: o200k_base from the packaged file, offline, bounded in cost."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferenceops.metering import tokens
from inferenceops.metering.tokens import (
    EXACT_CHARS,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_REPLY,
    TokenCounter,
    fallback_tokens,
    load_encoding,
    prompt_tokens,
)


@pytest.fixture(scope="module")
def counter(tmp_path_factory: pytest.TempPathFactory) -> TokenCounter:
    found = TokenCounter(tmp_path_factory.mktemp("tiktoken"))
    found.load()
    assert found.ready, found.failed
    return found


def test_loading_never_touches_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken fetches o200k_base from the internet at first use; we hand it the packaged file."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the tokenizer tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    encoding = load_encoding(tmp_path)
    assert encoding.encode_ordinary("hello world") == [24912, 2375]


def test_a_damaged_cache_file_is_replaced_from_the_package(tmp_path: Path) -> None:
    cached = tmp_path / hashlib.sha1(tokens._TIKTOKEN_SOURCE.encode()).hexdigest()
    cached.write_bytes(b"not a BPE file")
    assert len(load_encoding(tmp_path).encode_ordinary("hello world")) == 2
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == tokens._SHA256


def test_counts_are_real_tokens(counter: TokenCounter) -> None:
    assert counter.count("") == 0
    assert counter.count("hello world") == 2
    assert counter.count("The quick brown fox jumps over the lazy dog.") == 10


def test_a_long_text_is_counted_exactly_to_the_cap_and_scaled_beyond(counter: TokenCounter) -> None:
    text = "lorem ipsum dolor sit amet " * 2000  # 54,000 characters
    head = counter.count(text[:EXACT_CHARS])
    assert head is not None
    scaled = counter.count(text)
    assert scaled == head + -(-head * (len(text) - EXACT_CHARS) // EXACT_CHARS)
    exact = len(load_encoding(counter._cache_dir).encode_ordinary(text))
    assert abs(scaled - exact) / exact < 0.02  # a repetitive text scales almost exactly


@pytest.mark.parametrize(("doc", "field", "expected"), [
    ({"messages": [{"role": "user", "content": "hello world"}]}, "messages",
     2 + TOKENS_PER_MESSAGE + TOKENS_PER_REPLY),
    ({"messages": [{"role": "system", "content": "hello world"},
                   {"role": "user", "content": [{"type": "text", "text": "hello world"},
                                                {"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages", 2 + 1 + 2 + 2 * TOKENS_PER_MESSAGE + TOKENS_PER_REPLY),  # "\n" joins the texts
    ({"prompt": "hello world"}, "prompt", 2),
    ({"prompt": [1, 2, 3, 4]}, "prompt", 4),  # token ids are their own count
    ({"input": ["hello world", "hello world"]}, "input", 5),
    ({"input": [[1, 2], [3, 4, 5]]}, "input", 5),
    ({"prompt": ""}, "prompt", 1),
])
def test_prompt_tokens(counter: TokenCounter, doc: dict[str, Any], field: str, expected: int) -> None:
    assert prompt_tokens(doc, field, counter, size=10_000) == expected


_TEXTS = st.lists(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60),
                  min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(texts=_TEXTS)
def test_texts_counted_one_by_one_come_within_two_tokens_each_of_the_joined_count(
        counter: TokenCounter, texts: list[str]) -> None:
    """A newline folds into the whitespace or punctuation beside it when the texts are joined
    (``["\n", "\n", "\n"]`` is one token joined, five apart): at most the text's own edge
    and its separator, per text."""
    joined = counter.count("\n".join(texts))
    one_by_one = counter.count_texts(texts)
    assert joined is not None and one_by_one is not None
    assert abs(one_by_one - joined) <= 2 * len(texts)


def test_a_remembered_count_is_the_count_and_the_memo_stays_bounded(
        counter: TokenCounter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_MEMO", {})
    monkeypatch.setattr(tokens, "MEMO_SIZE", 3)
    texts = ["The quick brown fox", "jumps over", "the lazy dog."]
    first = counter.count_texts(texts)
    assert len(tokens._MEMO) == 3
    assert counter.count_texts(texts) == first == sum(counter.count(t) or 0 for t in texts) + 2
    assert counter.count_texts(["a new text"]) == counter.count("a new text")
    assert len(tokens._MEMO) == 3 and hash("The quick brown fox") not in tokens._MEMO


def test_past_the_exact_budget_new_texts_are_scaled_from_those_counted(
        counter: TokenCounter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_MEMO", {})
    texts = [f"message {i}: the quick brown fox jumps over the lazy dog. " * 20 for i in range(40)]
    assert sum(map(len, texts)) > 4 * EXACT_CHARS
    exact = len(load_encoding(counter._cache_dir).encode_ordinary("\n".join(texts)))
    estimate = counter.count_texts(texts)
    assert estimate is not None and abs(estimate - exact) / exact < 0.02
    assert len(tokens._MEMO) < len(texts)  # only what fitted in the budget was tokenized


def test_before_the_tokenizer_is_ready_the_byte_estimate_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_LOADED", tokens._Loaded())
    tokens._LOADED.started = True  # as if a load were under way
    lazy = TokenCounter()
    assert not lazy.ready and lazy.count("hello world") is None
    assert prompt_tokens({"prompt": "hello world"}, "prompt", lazy, size=300) == fallback_tokens(300)


def test_a_tokenizer_that_cannot_load_leaves_the_byte_estimate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_LOADED", tokens._Loaded())
    monkeypatch.setattr(tokens, "_SHA256", "0" * 64)  # the packaged file no longer matches
    broken = TokenCounter(tmp_path)
    broken.load()
    assert not broken.ready and broken.failed is not None and "pins" in broken.failed
    assert broken.count("hello world") is None
    assert list(tmp_path.iterdir()) == []  # nothing half-written, nothing fetched


_MESSAGES = st.lists(st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]), "content": st.text(max_size=40)}),
    st.fixed_dictionaries({"role": st.just("user"), "content": st.lists(
        st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)}), max_size=3)}),
    st.fixed_dictionaries({"role": st.just("user"), "content": st.text(max_size=20),
                           "name": st.text(max_size=10)}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.none(), "tool_calls": st.just(
        [{"function": {"name": "f", "arguments": '{"a": 1}'}}])}),
    st.text(max_size=5)), max_size=6)


@settings(max_examples=200, deadline=None)
@given(messages=_MESSAGES)
def test_plain_messages_count_as_the_general_walk_counts_them(
        counter: TokenCounter, messages: list[Any]) -> None:
    texts: list[str] = []
    ids = tokens._collect(messages, texts) + TOKENS_PER_MESSAGE * len(messages) + TOKENS_PER_REPLY
    general = max(1, (counter.count_texts(texts) or 0) + ids)
    assert prompt_tokens({"messages": messages}, "messages", counter, size=10_000) == general
