"""Provider credentials at rest: AES-256-GCM under a key from the environment or the platform secret.

Owns the ciphertext format and where its key comes from. Nothing here does I/O, logs,
or keeps a plaintext: ``decrypt`` hands it to its caller and forgets it. Neither the key nor
a plaintext ever appears in an error message or a ``repr`` (a key is shown only by its id).

The key — ``cipher_from_environment(environ, platform_secret)``, the one place it is read:

* ``INFERENCEOPS_CREDENTIALS_KEY`` when set: 32 random bytes as base64 or URL-safe base64
  text (padding optional). Set it to keep stored credentials readable when the platform
  secret is rotated, or to give credentials a key of their own.
* otherwise, derived from the platform secret (``INFERENCEOPS_SECRET_KEY`` or the data
  folder's) with HKDF-SHA256, no salt, ``info = HKDF_INFO``: a fresh install works with no
  setting, and every replica sharing the platform secret derives the same key. The HKDF
  ``info`` separates it from the secret's other use (keying API-key digests).

Ciphertext, version 1 (``VERSION``), bytes::

    offset 0   1          5             17
           | v | key id   | nonce (12)  | AES-GCM ciphertext || 16-byte tag |

* ``v``: the format version, 0x01.
* key id: the first 4 bytes of SHA-256(``KEY_ID_LABEL`` || key). It identifies the key without
  revealing it, so a blob sealed under another key is reported as exactly that
  (``WrongCredentialsKey``) rather than as a generic failure.
* nonce: 12 random bytes per encryption (random 96-bit nonces are safe far beyond the number
  of provider keys ever written under one key).
* associated data: the 5 header bytes || the id of the row the secret belongs to
  (``bound_to``): a blob copied onto another provider's row, or with its header edited,
  does not decrypt.

Failures are ``CredentialsError`` (a ``StoreError``): a malformed key setting, an unknown
format, an altered or misplaced ciphertext; ``WrongCredentialsKey`` for another key.

The cryptography package (AES-GCM) is imported on the first ``encrypt`` or ``decrypt``, not
with this module: every serving worker builds its cipher at start, and most never hold a
provider key (its OpenSSL bindings are ~9 MB of a worker's memory). HKDF-SHA256 is the
standard library's HMAC (RFC 5869), checked against cryptography's in the tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from inferenceops.store.errors import CredentialsError, WrongCredentialsKey

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_ENV = "INFERENCEOPS_CREDENTIALS_KEY"
#: HKDF ``info`` for the key derived from the platform secret. Never change it: every stored
#: credential would become unreadable.
HKDF_INFO = b"inferenceops provider-credentials key v1"
KEY_ID_LABEL = b"inferenceops credentials key id v1\x00"
VERSION = 1
KEY_BYTES = 32
KEY_ID_BYTES = 4
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 1 + KEY_ID_BYTES
MIN_PLATFORM_SECRET_BYTES = 32
GENERATE_HINT = ("generate one with `python -c 'import base64, os; "
                 "print(base64.urlsafe_b64encode(os.urandom(32)).decode())'`")


def key_id_of(key: bytes) -> bytes:
    """The 4-byte id of a key (a hash prefix: names the key, reveals nothing usable of it)."""
    return hashlib.sha256(KEY_ID_LABEL + key).digest()[:KEY_ID_BYTES]


def hkdf_sha256(secret: bytes, *, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869) without a salt: extract (HMAC keyed with zeros), then expand."""
    prk = hmac.new(bytes(hashlib.sha256().digest_size), secret, hashlib.sha256).digest()
    okm = block = b""
    counter = 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


class CredentialCipher:
    """Seals and opens provider credentials with one AES-256 key (see the module doc).

    Build it once per process (``cipher_from_environment``) and pass it to the store calls
    that need it; it holds no state besides the key.
    """

    __slots__ = ("_aead", "_key", "_key_id", "source")

    def __init__(self, key: bytes, *, source: str = "an explicit key") -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise CredentialsError(f"a credentials key is {KEY_BYTES} bytes (AES-256), "
                                   f"not {len(key) if isinstance(key, bytes) else type(key).__name__}")
        self._key = key
        self._aead: AESGCM | None = None  # on first use: see the module doc
        self._key_id = key_id_of(key)
        self.source = source  # where the key came from, for messages: never the key itself

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(self._key)
        return self._aead

    @classmethod
    def derived_from(cls, platform_secret: bytes) -> CredentialCipher:
        """The key HKDF-SHA256 derives from the platform secret (deterministic: same secret, same key)."""
        if len(platform_secret) < MIN_PLATFORM_SECRET_BYTES:
            raise CredentialsError(f"the platform secret must be at least {MIN_PLATFORM_SECRET_BYTES} "
                                   "bytes to derive a credentials key from it")
        key = hkdf_sha256(platform_secret, info=HKDF_INFO, length=KEY_BYTES)
        return cls(key, source="derived from the platform secret")

    @property
    def key_id(self) -> str:
        """The key's id as hex (what messages and ``repr`` show)."""
        return self._key_id.hex()

    def __repr__(self) -> str:
        return f"CredentialCipher(key_id={self.key_id!r}, source={self.source!r})"

    def encrypt(self, plaintext: str, *, bound_to: str) -> bytes:
        """Seal ``plaintext`` for the row ``bound_to``; only that row id opens it again."""
        if not bound_to:
            raise CredentialsError("a credential must be bound to a row id")
        header = bytes([VERSION]) + self._key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher().encrypt(nonce, plaintext.encode("utf-8"), header + bound_to.encode())
        return header + nonce + sealed

    def decrypt(self, blob: bytes, *, bound_to: str, what: str | None = None) -> str:
        """Open a blob sealed for the row ``bound_to``; ``what`` names it in errors (e.g. "provider 'x'")."""
        what = what or f"row {bound_to!r}"
        blob = bytes(blob)
        if len(blob) < HEADER_BYTES + NONCE_BYTES + TAG_BYTES or blob[0] != VERSION:
            version = blob[0] if blob else None
            raise CredentialsError(f"the stored credentials of {what} are not in a format this "
                                   f"version reads (format version {version}, length {len(blob)})")
        stored_id = blob[1:HEADER_BYTES]
        if stored_id != self._key_id:
            raise WrongCredentialsKey(
                f"the stored credentials of {what} were encrypted under a different key (id "
                f"{stored_id.hex()}; this process's key {self.key_id} is {self.source}); set "
                f"{KEY_ENV} to the key it was stored with",
                stored_key_id=stored_id.hex(), current_key_id=self.key_id)
        nonce = blob[HEADER_BYTES:HEADER_BYTES + NONCE_BYTES]
        aead = self._cipher()
        from cryptography.exceptions import InvalidTag

        try:
            plain = aead.decrypt(nonce, blob[HEADER_BYTES + NONCE_BYTES:],
                                       blob[:HEADER_BYTES] + bound_to.encode())
        except InvalidTag:
            raise CredentialsError(
                f"the stored credentials of {what} fail authentication under key {self.key_id}: "
                "they were altered, or copied from another row; set the key again") from None
        return plain.decode("utf-8")


def parse_key(text: str) -> bytes:
    """32 bytes from base64 or URL-safe base64 text (padding optional); the error never echoes it."""
    compact = "".join(text.split()).replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CredentialsError(f"{KEY_ENV} is not base64 text; {GENERATE_HINT}") from None
    if len(key) != KEY_BYTES:
        raise CredentialsError(f"{KEY_ENV} must decode to {KEY_BYTES} bytes (AES-256), not "
                               f"{len(key)}; {GENERATE_HINT}")
    return key


def cipher_from_environment(environ: Mapping[str, str], platform_secret: bytes) -> CredentialCipher:
    """The process's cipher: ``INFERENCEOPS_CREDENTIALS_KEY`` if set, else derived from the platform secret.

    The one place the key setting is read; ``environ`` is ``os.environ`` in a serving process.
    """
    text = environ.get(KEY_ENV, "").strip()
    if text:
        return CredentialCipher(parse_key(text), source=f"from {KEY_ENV}")
    return CredentialCipher.derived_from(platform_secret)
