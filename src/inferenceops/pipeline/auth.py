"""Data-plane authentication and authorization: a Bearer key becomes an ``ApiKey``, or not.

The presented secret is hashed with the platform's keyed hash and looked up
by digest in the snapshot's identity index: the secret itself is never kept,
and the lookup depends only on a digest the caller cannot steer, so its timing
says nothing about stored keys. Unknown, revoked (absent from the index),
expired and malformed keys all get the same 401. No I/O here.
"""

from __future__ import annotations

from inferenceops.errors import AuthenticationFailed, PermissionDenied
from inferenceops.platform import ApiKey, Identity, KeyHasher

_BEARER = b"bearer "
_MAX_SECRET = 512


def authenticate(identity: Identity, hasher: KeyHasher, authorization: bytes | None,
                 now: float) -> ApiKey:
    if not authorization or authorization[:7].lower() != _BEARER:
        raise AuthenticationFailed("Missing API key: send it as 'Authorization: Bearer <key>'.")
    secret = authorization[7:].strip()
    key = identity.key(hasher.digest(secret)) if 0 < len(secret) <= _MAX_SECRET else None
    if key is None or key.expired(now):
        raise AuthenticationFailed("Incorrect API key provided.")
    return key


def require_scope(key: ApiKey, scope: str) -> None:
    if scope not in key.scopes:
        raise PermissionDenied(f"This API key ({key.prefix}…) does not have the '{scope}' scope.")
