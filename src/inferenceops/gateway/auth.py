"""Data-plane authentication: a Bearer key becomes a ``Principal``, or 401.

Keys are looked up by their SHA-256 digest (the secret itself is never kept
or compared byte by byte), then the digests are compared in constant time.
Unknown, malformed and missing keys get the same answer: no hint of which.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from inferenceops.errors import AuthenticationFailed
from inferenceops.platform import Principal

_BEARER = b"bearer "


def key_digest(secret: str | bytes) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(raw).digest()


class KeyAuthenticator:
    __slots__ = ("_by_digest",)

    def __init__(self, principals_by_digest: Mapping[bytes, Principal]) -> None:
        self._by_digest = {d: (d, p) for d, p in principals_by_digest.items()}

    def authenticate(self, authorization: bytes | None) -> Principal:
        if not authorization or authorization[:7].lower() != _BEARER:
            raise AuthenticationFailed(
                "Missing API key: send it as 'Authorization: Bearer <key>'.")
        digest = key_digest(authorization[7:].strip())
        stored, principal = self._by_digest.get(digest, (_NO_DIGEST, None))
        # The dict finds the entry by digest; the constant-time compare is the actual check.
        if principal is None or not hmac.compare_digest(digest, stored):
            raise AuthenticationFailed("Incorrect API key provided.")
        return principal


_NO_DIGEST = bytes(32)
