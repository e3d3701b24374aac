"""Counting tokens locally, for the requests no engine counted: a real BPE, never a download.

Engines report usage on nearly every answer; the platform counts tokens itself
only where they do not — admission's estimate of a prompt before any engine has
seen it, and settlement of an answer that came without usage — and marks such
counts *estimated*. The tokenizer is OpenAI's ``o200k_base`` run by tiktoken. tiktoken
fetches its BPE file from the internet at first use; here the file comes from the
``bpe-openai`` package's data, is checked against the SHA-256 tiktoken pins for it,
and is placed in a private tiktoken cache folder under the name tiktoken looks for,
so tiktoken finds it and never goes online. A file that does not match is not
used (the count falls back to the byte estimate), and nothing is downloaded.

Loading takes ~0.3 s and ~70 MB, so a worker loads it on a thread the first
time a count is asked for, never at start (an idle worker stays small) and never
on the event loop; until it is ready, counts fall back to one token per 3 bytes.
Self-hosted models have their own tokenizers: o200k is close for modern
vocabularies, and every such count is marked estimated.

Cost on the request path: tokenizing at most ``EXACT_CHARS`` characters a request
(the rest is scaled from what was counted): ~2 µs of BPE for a short chat prompt,
~280 µs at the cap — and more than that in a busy server, where every call also
hands the GIL to other threads and back. Each text (a message's content, a
prompt) is counted on its own and the count remembered by the text's hash
(``MEMO_SIZE`` of them, ints only): a conversation sends its history and its
system prompt again on every turn, and only the new text is tokenized. Counting
texts one by one and adding one token per separator gives the count of the texts
joined by newlines, to within two tokens per text (o200k may fold a newline into the
whitespace or punctuation beside it).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("inferenceops.metering")

ENCODING = "o200k_base"
#: tiktoken's cache key for o200k_base is the SHA-1 of this address; nothing fetches it.
_TIKTOKEN_SOURCE = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
#: The SHA-256 tiktoken requires of that file (it refuses, and would re-fetch, anything else).
_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
_PACKAGE = "bpe_openai"
EXACT_CHARS = 8192
#: Texts whose counts a process remembers (by hash; the oldest go first): ~1 MB at most.
MEMO_SIZE = 8192
BYTES_PER_TOKEN = 3  # the fallback: errs high for English text, so reservations err safe
#: Framing each chat message costs (role, separators), as OpenAI documents for its models.
TOKENS_PER_MESSAGE, TOKENS_PER_REPLY = 3, 3


class _Encoding(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


def fallback_tokens(size: int) -> int:
    """One token per 3 bytes (at least 1): what a count falls back to."""
    return size // BYTES_PER_TOKEN + 1


class TokenCounter:
    """Counts tokens with o200k_base once loaded (see the module doc); safe to share.

    The loaded tokenizer is one per process, whichever counter loaded it.
    """

    def __init__(self, cache_dir: Path | None = None) -> None:
        self._cache_dir = cache_dir or Path(tempfile.gettempdir()) / "inferenceops-tiktoken"

    @property
    def ready(self) -> bool:
        return _LOADED.encoding is not None

    @property
    def failed(self) -> str | None:
        """Why the tokenizer could not be loaded, if it could not."""
        return _LOADED.failed

    def count(self, text: str) -> int | None:
        """Tokens of ``text`` (scaled past ``EXACT_CHARS``); None until the tokenizer is ready."""
        encoding = _LOADED.encoding
        if encoding is None:
            self._start_loading()
            return None
        return _count(encoding, text)

    def count_texts(self, texts: list[str]) -> int | None:
        """Tokens of ``texts`` joined by newlines, each text's count remembered (module doc).

        At most ``EXACT_CHARS`` characters not counted before are tokenized; the texts past
        that are scaled from the ones counted. None until the tokenizer is ready.
        """
        encoding = _LOADED.encoding
        if encoding is None:
            self._start_loading()
            return None
        memo = _MEMO
        total = counted_chars = skipped_chars = 0
        budget = EXACT_CHARS
        for text in texts:
            found = memo.get(hash(text))
            if found is None:
                if budget <= 0:
                    skipped_chars += len(text)
                    continue
                found = _count(encoding, text)
                budget -= len(text)
                if len(memo) >= MEMO_SIZE:
                    with suppress(StopIteration, KeyError, RuntimeError):
                        del memo[next(iter(memo))]
                memo[hash(text)] = found
            total += found
            counted_chars += len(text)
        if skipped_chars:
            total += -(-total * skipped_chars // counted_chars) if counted_chars else \
                fallback_tokens(skipped_chars)
        return total + len(texts) - 1 if texts else 0

    def load(self) -> None:
        """Load now, on this thread (tests, tools); the request path loads on a thread."""
        with _LOADED.lock:
            if _LOADED.encoding is not None or _LOADED.failed is not None:
                return
            try:
                _LOADED.encoding = load_encoding(self._cache_dir)
            except Exception as exc:  # noqa: BLE001 — any failure leaves the byte estimate in place
                _LOADED.failed = f"{type(exc).__name__}: {exc}"
                log.warning("token counting falls back to bytes/%d: the tokenizer did not load "
                            "(%s)", BYTES_PER_TOKEN, _LOADED.failed)

    def _start_loading(self) -> None:
        if _LOADED.started:
            return
        _LOADED.started = True
        try:
            asyncio.get_running_loop().run_in_executor(None, self.load)
        except RuntimeError:  # no event loop (a tool, a test): load here
            self.load()


class _Loaded:
    """The process's tokenizer: loaded at most once, by whichever counter asks first."""

    def __init__(self) -> None:
        self.encoding: _Encoding | None = None
        self.failed: str | None = None
        self.started = False
        self.lock = threading.Lock()


_LOADED = _Loaded()
#: hash(text) → its token count (``TokenCounter.count_texts``); a collision of two texts'
#: 64-bit salted hashes would only misjudge an estimate.
_MEMO: dict[int, int] = {}


def _count(encoding: _Encoding, text: str) -> int:
    if len(text) <= EXACT_CHARS:
        return len(encoding.encode_ordinary(text))
    head = len(encoding.encode_ordinary(text[:EXACT_CHARS]))
    return head + -(-head * (len(text) - EXACT_CHARS) // EXACT_CHARS)


def load_encoding(cache_dir: Path) -> _Encoding:
    """o200k_base through tiktoken, from the packaged file (checked), never from the network."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / hashlib.sha1(_TIKTOKEN_SOURCE.encode()).hexdigest()
    if not (target.is_file() and _sha256(target.read_bytes()) == _SHA256):
        data = gzip.decompress(_packaged_file().read_bytes())
        if _sha256(data) != _SHA256:
            raise ValueError(f"the packaged {ENCODING} file is not the one tiktoken pins")
        partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        partial.write_bytes(data)
        partial.replace(target)  # atomic: concurrent workers each write a whole file
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)  # where tiktoken looks (it reads it per load)
    import tiktoken  # ~10 MB of modules, only once something needs counting

    return tiktoken.get_encoding(ENCODING)


def _packaged_file() -> Path:
    """The gzipped BPE file in the installed bpe-openai package, found without importing it
    (its own code loads a second tokenizer, ~140 MB; only its data is wanted)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {_PACKAGE} package (its {ENCODING} file) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / f"{ENCODING}.tiktoken.gz"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def prompt_tokens(doc: dict[str, Any], field: str, counter: TokenCounter, size: int) -> int:
    """The prompt of a parsed request (``messages``, ``prompt`` or ``input``), counted.

    Text is counted; token-id arrays (``prompt: [1, 2, 3]``) are their length; chat
    messages add their framing. Falls back to ``fallback_tokens(size)`` (``size``: the
    body's bytes) while the tokenizer is not ready.
    """
    texts: list[str] = []
    value = doc.get(field)
    if field == "messages" and type(value) is list:
        ids = TOKENS_PER_MESSAGE * len(value) + TOKENS_PER_REPLY
        for message in value:
            # The common message — a role and its text — without the general walk.
            if type(message) is dict and message.keys() <= _PLAIN_MESSAGE \
                    and type(content := message.get("content")) is str:
                texts.append(content)
            else:
                ids += _collect(message, texts)
    else:
        ids = _collect(value, texts)
    counted = counter.count_texts(texts)
    if counted is None:
        return fallback_tokens(size)
    return max(1, counted + ids)


def prompt_texts(doc: dict[str, Any], field: str) -> list[str]:
    """The text of a parsed request's prompt (``messages``, ``prompt`` or ``input``), piece
    by piece: what ``prompt_tokens`` counts, and what an error log must not repeat."""
    texts: list[str] = []
    _collect(doc.get(field), texts)
    return texts


_PLAIN_MESSAGE = frozenset({"role", "content"})


def _collect(value: Any, texts: list[str]) -> int:
    """Append the text in ``value`` to ``texts``; returns the token ids found as numbers."""
    if isinstance(value, str):
        texts.append(value)
        return 0
    if isinstance(value, dict):  # a message, or a content part
        found = 0
        for name in ("content", "text", "name", "arguments"):
            found += _collect(value.get(name), texts)
        calls = value.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    found += _collect(call.get("function"), texts)
        return found
    if isinstance(value, list):
        if value and all(type(item) is int for item in value):
            return len(value)  # token ids
        return sum(_collect(item, texts) for item in value)
    return 0
