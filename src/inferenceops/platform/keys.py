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
    """Keyed digests of key secrets; one instance per process, built from the platform secret.

    The digest is HMAC-SHA256 (RFC 2104) under a key derived from the platform
    secret. Every request hashes the key it presents, so the two SHA-256 states
    after the padded key (inner and outer) are computed once here and copied per
    digest: the same bytes as ``hmac.new(key, secret, sha256)``, without setting
    up an HMAC (two more SHA-256 blocks and OpenSSL's set-up) every time.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, platform_secret: bytes) -> None:
        if len(platform_secret) < 32:
            raise ValueError("the platform secret must be at least 32 bytes")
        key = hmac.new(platform_secret, b"inferenceops api-key digest v1",
                       hashlib.sha256).digest().ljust(_BLOCK, b"\0")  # 32 bytes: one block padded
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, secret: str | bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(secret.encode() if isinstance(secret, str) else secret)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_BLOCK = 64  # SHA-256's block size: an HMAC key up to this long is padded, not hashed
