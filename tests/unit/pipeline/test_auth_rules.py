"""The data plane's key check at its edges: what is looked up, what is said (no I/O).

``test_auth`` covers the common cases; these pin what mutmut found unguarded
(``make mutation``): which presented secrets are hashed and looked up at all
(1 to 512 bytes, after trimming), the exact words of the two 401s (OpenAI's, which
clients match on), and the 403 of a missing scope naming the key and the scope.
"""

from __future__ import annotations

import pytest

from inferenceops.errors import AuthenticationFailed, PermissionDenied
from inferenceops.pipeline.auth import authenticate, require_scope
from inferenceops.platform import ApiKey, Identity, KeyHasher, Principal

MISSING = "Missing API key: send it as 'Authorization: Bearer <key>'."
INCORRECT = "Incorrect API key provided."


class CountingHasher(KeyHasher):
    """A real hasher that remembers every secret it was asked to digest."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        super().__init__(b"k" * 32)
        self.seen: list[bytes] = []

    def digest(self, secret: str | bytes) -> bytes:
        raw = secret.encode() if isinstance(secret, str) else secret
        self.seen.append(raw)
        return super().digest(raw)


SHORTEST, LONGEST = "x", "y" * 512


def world() -> tuple[CountingHasher, Identity]:
    hasher = CountingHasher()
    alice = Principal("usr_alice")
    keys = [(hasher.digest(secret), ApiKey(f"key_{n}", secret[:8], alice, "team_a",
                                           frozenset({"inference"})))
            for n, secret in enumerate((SHORTEST, LONGEST, "sk-io-alice"))]
    hasher.seen.clear()
    return hasher, Identity(keys, {})


@pytest.mark.parametrize(("secret", "key_id"), [(SHORTEST, "key_0"), (LONGEST, "key_1")],
                         ids=["1-byte", "512-bytes"])
def test_secrets_of_one_to_512_bytes_are_looked_up(secret: str, key_id: str) -> None:
    hasher, identity = world()
    assert authenticate(identity, hasher, f"Bearer {secret}".encode(), 0.0).id == key_id
    assert hasher.seen == [secret.encode()]


@pytest.mark.parametrize("header", [b"Bearer " + b"y" * 513, b"Bearer " + b"y" * 100_000,
                                    b"Bearer ", b"Bearer      ", b"bearer \t "],
                         ids=["513-bytes", "100k", "empty", "spaces", "whitespace"])
def test_an_empty_or_over_long_secret_is_refused_without_being_hashed(header: bytes) -> None:
    hasher, identity = world()
    with pytest.raises(AuthenticationFailed) as info:
        authenticate(identity, hasher, header, 0.0)
    assert (info.value.status, info.value.message) == (401, INCORRECT)
    assert hasher.seen == []


@pytest.mark.parametrize("header", [None, b"", b"Basic abc", b"Bearer", b"sk-io-alice"])
def test_no_bearer_key_at_all_is_a_401_saying_how_to_send_one(header: bytes | None) -> None:
    hasher, identity = world()
    with pytest.raises(AuthenticationFailed) as info:
        authenticate(identity, hasher, header, 0.0)
    assert (info.value.status, info.value.message) == (401, MISSING)
    assert hasher.seen == []


@pytest.mark.parametrize("header", [b"Bearer sk-io-nobody", b"BEARER sk-io-alicE"])
def test_a_wrong_key_is_a_401_in_openais_words(header: bytes) -> None:
    hasher, identity = world()
    with pytest.raises(AuthenticationFailed) as info:
        authenticate(identity, hasher, header, 0.0)
    assert (info.value.status, info.value.message) == (401, INCORRECT)
    assert info.value.code == "invalid_api_key"


def test_a_missing_scope_is_a_403_naming_the_key_and_the_scope() -> None:
    key = ApiKey("key_v", "sk-io-vw", Principal("usr_v"), "team_a", frozenset({"admin"}))
    with pytest.raises(PermissionDenied) as info:
        require_scope(key, "inference")
    assert info.value.status == 403
    assert info.value.message == "This API key (sk-io-vw…) does not have the 'inference' scope."
    require_scope(key, "admin")
