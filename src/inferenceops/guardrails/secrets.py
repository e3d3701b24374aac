"""Credentials in text: cloud and SaaS keys by their published shapes, private key blocks,
JWTs, the value after a credential label, and long random-looking tokens.

Known shapes are exact (a GitHub token is ``ghp_`` and 36 characters), so they are
reported as found. The two fuzzy finders guard their precision: a labelled value
(``password: …``, ``api_key=…``) is skipped when it is a placeholder (``<your key>``,
``${TOKEN}``, ``****``, ``changeme``); a bare token counts only when it is long, mixes
upper and lower case and digits, and its characters are spread like random data
(Shannon entropy per character) — hex digests, UUIDs, IPFS hashes, CamelCase identifiers,
words, paths and base64-encoded images or documents (``data:…;base64,`` or their file
signatures) are not reported by it. A password in a URL (``scheme://user:pw@host``) is.

Speed: every shape starts with a literal (its prefix), which Python's regular
expressions find with a fast substring search; a pattern that starts with a look-behind
or a character class is tried at every position instead (~20-50 µs per KB each), so
word boundaries are checked here in Python after a match, and labels are found with
``str.find`` in the lowered text.
"""

from __future__ import annotations

import base64
import math
import re
from collections import Counter
from collections.abc import Iterator

import orjson

from inferenceops.guardrails.findings import SECRET, Finding
from inferenceops.guardrails.pii import ScanText

_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

#: (kind, the literal every match starts with, pattern). No look-behind first: see above.
_SHAPES: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (kind, literal, re.compile(pattern, re.DOTALL)) for kind, literal, pattern in (
        ("aws_access_key", "A", r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Za-z0-9])"),
        ("github_token", "gh", r"gh[pousr]_[A-Za-z0-9]{36,251}(?![A-Za-z0-9])"),
        ("github_token", "github_pat_", r"github_pat_[A-Za-z0-9_]{22,255}"),
        ("gitlab_token", "glpat-", r"glpat-[A-Za-z0-9_-]{20,}"),
        ("slack_token", "xox", r"xox[abposr]-[A-Za-z0-9-]{10,}"),
        ("slack_webhook", "hooks.slack.com", r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}"),
        ("openai_key", "sk-", r"sk-[A-Za-z0-9_-]{20,}"),
        ("stripe_key", "_live_", r"[rsp]k_live_[A-Za-z0-9]{16,}"),
        ("stripe_key", "_test_", r"[rsp]k_test_[A-Za-z0-9]{16,}"),
        ("google_api_key", "AIza", r"AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),
        ("huggingface_token", "hf_", r"hf_[A-Za-z0-9]{30,}"),
        ("azure_storage_key", "AccountKey=", r"AccountKey=[A-Za-z0-9+/]{60,}={0,2}"),
        ("private_key", "-----BEGIN", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
                                       r"(?:.{0,16384}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY"
                                       r"(?: BLOCK)?-----|.{0,16384})"),
        ("jwt", "eyJ", r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),
    ))
#: The shapes whose first character is part of the key (checked for a word boundary before it).
_BOUNDED = frozenset({"aws_access_key", "github_token", "gitlab_token", "slack_token",
                      "openai_key", "stripe_key", "google_api_key", "huggingface_token", "jwt"})

# --- a value after a credential label ------------------------------------------------------
_LABELS = ("password", "passwd", "pwd", "secret", "api_key", "api-key", "apikey", "access_key",
           "access-key", "accesskey", "token", "bearer")
_AFTER_LABEL = re.compile(r"[A-Za-z_-]{0,24}[\"']?\s*(?::=|=>|[:=])\s*[\"']?"
                          r"([^\s\"'`,;<>{}()\[\]]{8,256})")
_PLACEHOLDER = re.compile(
    r"(?i)(?:\$|%|\*|x{4,}|\.{3}|your|my[_-]?|example|sample|dummy|test|changeme|"
    r"placeholder|redacted|none|null|undefined|true|false|secret|password|token)")

#: The password of ``scheme://user:password@host``.
_URL_PASSWORD = re.compile(r"://[^/\s:@]{1,64}:([^/\s@]{1,128})@")

# --- a bare random-looking token --------------------------------------------------------------
_TOKEN = re.compile(r"[A-Za-z0-9+/_=-]{32,512}(?![A-Za-z0-9+/_=-]|\.[A-Za-z0-9])")
_TOKEN_CHARS = frozenset("+/_=-.") | _WORD
_TOKEN_MASK = bytes(0x61 if chr(b) in _TOKEN_CHARS and b != 0x2E else 0x20 for b in range(256))
_TOKEN_RUN = b"a" * 32
ENTROPY_BITS = 4.0  # per character: base64 of random bytes runs ~5.5+, English words ~3-4
_HEX_OR_UUID = re.compile(r"[0-9a-fA-F-]+\Z")
_DIGIT = re.compile(r"[0-9]")
_IPFS_CID = re.compile(r"Qm[1-9A-HJ-NP-Za-km-z]{44}\Z")  # a content hash (base58), not a key
_CAMEL_WORD = re.compile(r"[A-Z]?[a-z]{3,}|[0-9]{2,}")
#: Base64 of a file's first bytes: PNG, JPEG, GIF, PDF, ZIP (and Office files), WebP.
_FILE_SIGNATURES = ("iVBORw0KGgo", "/9j/", "R0lGOD", "JVBERi0", "UEsDB", "UklGR")


def find_secrets(scan: ScanText) -> Iterator[Finding]:
    text = scan.text
    for kind, literal, pattern in _SHAPES:
        at = text.find(literal)
        if at == -1:
            continue
        for m in pattern.finditer(text, max(0, at - 4)):
            start = m.start()
            if kind in _BOUNDED and start and text[start - 1] in _WORD:
                continue
            if kind == "jwt" and not _jwt_header(m.group()):
                continue
            yield Finding(SECRET, kind, start, m.end())
    yield from _labelled(text)
    if "://" in text:
        for m in _URL_PASSWORD.finditer(text):
            yield Finding(SECRET, "url_credential", m.start(1), m.end(1))
    yield from _random_tokens(text)


def _random_tokens(text: str) -> Iterator[Finding]:
    """Bare tokens that look random. The regex is tried only from where the text has 32
    token characters in a row, found in a byte mask of the text (``bytes.translate`` and
    ``find``, in C): prose has none, and costs two passes in C instead of the regex's walk."""
    mask = text.encode("utf-8", "surrogatepass").translate(_TOKEN_MASK)
    at = mask.find(_TOKEN_RUN)
    if at == -1:
        return
    if not text.isascii():
        at = 0  # byte offsets are not character offsets: scan it all
    for m in _TOKEN.finditer(text, at):
        start = m.start()
        if (start == 0 or text[start - 1] not in _TOKEN_CHARS) and random_looking(m.group()) \
                and not text.endswith(";base64,", 0, start):
            yield Finding(SECRET, "high_entropy_token", start, m.end())


def _labelled(text: str) -> Iterator[Finding]:
    lowered = text.lower()
    for label in _LABELS:
        at = lowered.find(label)
        while at != -1:
            m = _AFTER_LABEL.match(text, at + len(label))
            if m is not None:
                value = m.group(1)
                if not _PLACEHOLDER.match(value) and len(set(value)) > 3:
                    yield Finding(SECRET, "labelled_credential", m.start(1), m.end(1))
            at = lowered.find(label, at + len(label))


def random_looking(token: str) -> bool:
    """Long, upper and lower case and digits mixed, spread like random data; not hex
    (digests, UUIDs), not a base64-encoded file."""
    if _HEX_OR_UUID.match(token) or token.startswith(_FILE_SIGNATURES) \
            or _IPFS_CID.match(token) or _words_share(token) >= 0.8:
        return False
    if token.lower() == token or token.upper() == token or _DIGIT.search(token) is None:
        return False
    return shannon_entropy(token) >= ENTROPY_BITS


def _words_share(token: str) -> float:
    """How much of ``token`` is made of CamelCase words and numbers (an identifier's shape:
    random keys rarely hold three lower-case letters in a row more than once or twice)."""
    return sum(len(w) for w in _CAMEL_WORD.findall(token)) / len(token)


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``'s character distribution."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def _jwt_header(token: str) -> bool:
    """Whether the token's first part decodes to a JSON header with an ``alg``."""
    head = token.split(".", 1)[0]
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return False
    return isinstance(doc, dict) and "alg" in doc
