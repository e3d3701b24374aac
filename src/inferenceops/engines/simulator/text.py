"""Deterministic text for the simulator: tokenisation, prompt flattening, filler, vectors.

Tokenisation rule (documented because usage, ``/tokenize`` and prefix-cache
blocks all depend on it): a token is a run of word characters (``\\w+``) or a
single other non-space character; whitespace is not a token. Token ids are
``crc32(token) % VOCAB_SIZE``, stable across processes. Chat messages are
flattened as ``"{role}: {content}\\n"`` each, followed by ``"assistant:"``.

Filler output is built from plain words so that tokenising the generated text
gives back exactly ``completion_tokens``. Everything is a pure function of its
inputs (seed, prompt); no I/O, no clocks.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
import struct
import zlib
from functools import lru_cache
from typing import Any

__all__ = [
    "VOCAB_SIZE",
    "FillerText",
    "count_tokens",
    "embedding_vector",
    "encode_base64",
    "flatten_messages",
    "natural_length",
    "prompt_key",
    "tokenize",
]

VOCAB_SIZE = 128_000  # Llama-3-sized id space; collisions are harmless here.
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

_WORD_LIST = (
    "the of and to in is that for it as with was on be by this are from at or an have not "
    "which but all were when we there can been one more will if would about so their what "
    "out up into some could them time other than then these two may first any new like "
    "model token engine batch cache queue request stream latency budget team policy route "
    "signal memory block prefix adapter value system network service window layer vector "
    "river mountain garden window paper stone light water field music planet harbor market "
    "simple quiet bright early steady careful patient useful gentle modern practical clear "
    "builds moves keeps shows holds gives takes makes finds turns reads writes sends brings"
)
_WORDS = tuple(_WORD_LIST.split())
_SPACED_WORDS = tuple(" " + w for w in _WORDS)


@lru_cache(maxsize=65_536)
def _token_id(piece: str) -> int:
    return zlib.crc32(piece.encode("utf-8")) % VOCAB_SIZE


def tokenize(text: str) -> list[int]:
    """Token ids of ``text`` under the simulator's rule (see module docstring)."""
    return [_token_id(piece) for piece in _TOKEN_RE.findall(text)]


def count_tokens(text: str) -> int:
    """Number of tokens in ``text`` without computing ids."""
    return len(_TOKEN_RE.findall(text))


def flatten_messages(messages: list[Any]) -> str | None:
    """The prompt text for chat ``messages``, or None when they are malformed.

    Content may be a string, a list of parts (text parts are joined, others
    ignored) or null.
    """
    out: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            return None
        role = message.get("role")
        if not isinstance(role, str):
            return None
        content = message.get("content")
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        elif isinstance(content, list):
            parts = [
                part.get("text", "")
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text", ""), str)
            ]
            text = "".join(parts)
        else:
            return None
        out.append(f"{role}: {text}\n")
    out.append("assistant:")
    return "".join(out)


def prompt_key(seed: int, request_seed: int | None, prompt: str) -> str:
    """The RNG key for one request: same (seed, request seed, prompt) → same output."""
    digest = hashlib.blake2b(prompt.encode("utf-8"), digest_size=12).hexdigest()
    return f"{seed}:{request_seed}:{digest}"


def natural_length(key: str, default: int, low: int | None, high: int | None) -> int:
    """How many tokens the filler "wants" before it stops on its own."""
    if low is None or high is None:
        return default
    return random.Random(key + ":len").randint(low, high)


class FillerText:
    """Deterministic plain-word text, produced a few tokens at a time.

    Each piece is exactly one token: a word (with a leading space after the
    first), or a full stop ending a sentence.
    """

    __slots__ = ("_rng", "_left", "_first", "_capitalise")

    def __init__(self, key: str) -> None:
        self._rng = random.Random(key)
        self._left = self._rng.randint(4, 14)
        self._first = True
        self._capitalise = False

    def take(self, n: int) -> str:
        """The next ``n`` tokens of text, concatenated."""
        rng = self._rng
        pieces: list[str] = []
        for _ in range(n):
            if self._first:
                self._first = False
                pieces.append(rng.choice(_WORDS).capitalize())
            elif self._left == 0:
                pieces.append(".")
                self._left = rng.randint(4, 14)
                self._capitalise = True
            else:
                word = rng.choice(_SPACED_WORDS)
                if self._capitalise:
                    word = " " + word[1:].capitalize()
                    self._capitalise = False
                pieces.append(word)
                self._left -= 1
        return "".join(pieces)


def embedding_vector(seed: int, text: str, dim: int) -> list[float]:
    """A unit-norm vector derived from a hash of (seed, text)."""
    raw = hashlib.shake_256(f"{seed}\0{text}".encode()).digest(4 * dim)
    values = [x / 2_147_483_648.0 - 1.0 for x in struct.unpack(f"<{dim}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def encode_base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding of an embedding: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
