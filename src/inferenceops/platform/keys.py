"""API key secrets: how they are made, shown and hashed. Pure functions, no I/O.

A key is ``sk-io-`` + 256 random bits (base64url). Only its keyed hash
(HMAC-SHA256 under the platform's secret) is stored: a leaked database does
not yield usable keys, and a digest cannot be checked without the secret.
The first ``PREFIX_LENGTH`` characters are kept in clear to identify a key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "sk-io-"
PREFIX_LENGTH = 12


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def visible_prefix(secret: str) -> str:
    return secret[:PREFIX_LENGTH]


class KeyHasher:
    """Keyed digests of key secrets; one instance per process, built from the platform secret."""

    __slots__ = ("_secret",)

    def __init__(self, platform_secret: bytes) -> None:
        if len(platform_secret) < 32:
            raise ValueError("the platform secret must be at least 32 bytes")
        self._secret = hmac.new(platform_secret, b"inferenceops api-key digest v1",
                                hashlib.sha256).digest()

    def digest(self, secret: str | bytes) -> bytes:
        raw = secret.encode() if isinstance(secret, str) else secret
        return hmac.new(self._secret, raw, hashlib.sha256).digest()
