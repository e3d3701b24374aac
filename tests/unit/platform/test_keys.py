"""Key digests: HMAC-SHA256 under a key derived from the platform secret, however it is computed."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from inferenceops.platform.keys import KeyHasher, new_secret

PLATFORM_SECRET = bytes(range(40))


def reference(platform_secret: bytes, secret: bytes) -> bytes:
    """The digest as written down: hmac.new under the derived key."""
    key = hmac.new(platform_secret, b"inferenceops api-key digest v1", hashlib.sha256).digest()
    return hmac.new(key, secret, hashlib.sha256).digest()


@pytest.mark.parametrize("secret", [b"", b"sk-bench", new_secret().encode(), b"x" * 64,
                                    b"y" * 65, bytes(range(256)) * 3],
                         ids=["empty", "short", "new", "block", "over-block", "binary"])
def test_a_digest_is_hmac_sha256_under_the_derived_key(secret: bytes) -> None:
    hasher = KeyHasher(PLATFORM_SECRET)
    assert hasher.digest(secret) == reference(PLATFORM_SECRET, secret)
    assert hasher.digest(secret.decode("latin-1") if secret.isascii() else secret) \
        == reference(PLATFORM_SECRET, secret)


def test_digests_do_not_leak_into_each_other_and_depend_on_the_platform_secret() -> None:
    hasher = KeyHasher(PLATFORM_SECRET)
    first = hasher.digest("sk-io-a")
    assert hasher.digest("sk-io-b") != first
    assert hasher.digest("sk-io-a") == first  # the kept states are copied, never updated
    assert KeyHasher(PLATFORM_SECRET[::-1]).digest("sk-io-a") != first


def test_a_short_platform_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        KeyHasher(b"x" * 31)
