"""Provider credentials at rest: AES-256-GCM round trip, tamper detection, wrong key, row binding,
the key from the environment or derived from the platform secret. No database needed."""

from __future__ import annotations

import base64
import os

import pytest

from inferenceops.store import CredentialsError, WrongCredentialsKey
from inferenceops.store.credentials import (
    HEADER_BYTES,
    HKDF_INFO,
    KEY_ENV,
    NONCE_BYTES,
    CredentialCipher,
    cipher_from_environment,
    hkdf_sha256,
    parse_key,
)

SECRET = b"platform-secret-for-credentials-tests-0123456789"
PLAIN = "sk-upstream-ü-0123456789abcdef"


def test_round_trip_with_a_fresh_nonce_each_time() -> None:
    cipher = CredentialCipher(os.urandom(32))
    first, second = (cipher.encrypt(PLAIN, bound_to="prov_a") for _ in range(2))
    assert first != second  # random nonce
    assert first[0] == 1 and first[1:HEADER_BYTES].hex() == cipher.key_id
    assert len(first) == HEADER_BYTES + NONCE_BYTES + len(PLAIN.encode()) + 16
    assert PLAIN.encode() not in first
    assert cipher.decrypt(first, bound_to="prov_a") == cipher.decrypt(second, bound_to="prov_a") == PLAIN


@pytest.mark.parametrize("offset", [HEADER_BYTES, HEADER_BYTES + NONCE_BYTES, -1],
                         ids=["nonce", "ciphertext", "tag"])
def test_any_altered_byte_is_detected(offset: int) -> None:
    cipher = CredentialCipher(os.urandom(32))
    blob = bytearray(cipher.encrypt(PLAIN, bound_to="prov_a"))
    blob[offset] ^= 0x01
    with pytest.raises(CredentialsError, match="fail authentication") as caught:
        cipher.decrypt(bytes(blob), bound_to="prov_a", what="provider 'openai'")
    assert "provider 'openai'" in str(caught.value) and PLAIN not in str(caught.value)
    assert not isinstance(caught.value, WrongCredentialsKey)


@pytest.mark.parametrize("blob", [b"", b"\x01\x00", b"\x02" + bytes(40)], ids=["empty", "short", "v2"])
def test_unknown_formats_are_refused(blob: bytes) -> None:
    with pytest.raises(CredentialsError, match="format"):
        CredentialCipher(os.urandom(32)).decrypt(blob, bound_to="prov_a")


def test_wrong_key_is_reported_as_such_with_both_key_ids() -> None:
    stored_with, current = CredentialCipher(os.urandom(32)), CredentialCipher(os.urandom(32))
    blob = stored_with.encrypt(PLAIN, bound_to="prov_a")
    with pytest.raises(WrongCredentialsKey) as caught:
        current.decrypt(blob, bound_to="prov_a", what="provider 'openai'")
    error = caught.value
    assert (error.stored_key_id, error.current_key_id) == (stored_with.key_id, current.key_id)
    assert f"different key (id {stored_with.key_id}" in str(error)
    assert f"set {KEY_ENV} to the key it was stored with" in str(error)


def test_a_ciphertext_only_opens_on_its_own_row() -> None:
    cipher = CredentialCipher(os.urandom(32))
    blob = cipher.encrypt(PLAIN, bound_to="prov_a")
    with pytest.raises(CredentialsError, match="copied from another row"):
        cipher.decrypt(blob, bound_to="prov_b")
    edited = bytes([blob[0]]) + bytes(4) + blob[HEADER_BYTES:]  # an edited key id: another key
    with pytest.raises(WrongCredentialsKey):
        cipher.decrypt(edited, bound_to="prov_a")


def test_derivation_from_the_platform_secret_is_deterministic() -> None:
    one, two = CredentialCipher.derived_from(SECRET), CredentialCipher.derived_from(SECRET)
    assert one.key_id == two.key_id
    assert two.decrypt(one.encrypt(PLAIN, bound_to="prov_a"), bound_to="prov_a") == PLAIN
    assert CredentialCipher.derived_from(SECRET + b"!").key_id != one.key_id
    # Pinned: changing the HKDF info label (or the key-id hash) would orphan every stored key.
    assert CredentialCipher.derived_from(b"x" * 40).key_id == "3b8030b6"
    with pytest.raises(CredentialsError, match="at least 32 bytes"):
        CredentialCipher.derived_from(b"short")


@pytest.mark.parametrize("length", [1, 32, 33, 64, 100])
def test_the_standard_library_hkdf_is_cryptography_s_hkdf(length: int) -> None:
    """The derivation runs without cryptography (kept out of idle workers), to the same bytes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    for secret in (SECRET, b"x" * 40, os.urandom(32), os.urandom(200)):
        for info in (HKDF_INFO, b"", b"other"):
            expected = HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                            info=info).derive(secret)
            assert hkdf_sha256(secret, info=info, length=length) == expected


def test_the_environment_key_wins_in_every_base64_spelling() -> None:
    key = os.urandom(32)
    explicit = CredentialCipher(key)
    spellings = [base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode(),
                 base64.urlsafe_b64encode(key).decode().rstrip("="),
                 f"  {base64.b64encode(key).decode()}\n"]
    for text in spellings:
        cipher = cipher_from_environment({KEY_ENV: text}, SECRET)
        assert cipher.key_id == explicit.key_id and KEY_ENV in cipher.source
    derived = cipher_from_environment({KEY_ENV: "  "}, SECRET)
    assert derived.key_id == CredentialCipher.derived_from(SECRET).key_id
    assert cipher_from_environment({}, SECRET).key_id == derived.key_id


@pytest.mark.parametrize("text", ["not base64 at all!", base64.b64encode(b"too short").decode(),
                                  base64.b64encode(os.urandom(48)).decode()],
                         ids=["not-base64", "short", "long"])
def test_a_malformed_environment_key_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(CredentialsError, match=KEY_ENV) as caught:
        parse_key(text)
    assert text not in str(caught.value) and "generate one" in str(caught.value)


def test_repr_shows_the_key_id_never_the_key() -> None:
    key = os.urandom(32)
    cipher = CredentialCipher(key, source="from a test")
    text = repr(cipher)
    assert cipher.key_id in text and key.hex() not in text
    assert base64.b64encode(key).decode() not in text
    with pytest.raises(CredentialsError, match="32 bytes"):
        CredentialCipher(os.urandom(16))
