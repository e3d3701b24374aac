"""The OIDC issuer's signing keys (JWKS): fetched, parsed, cached and refreshed here.

``JWKSCache`` owns the only I/O of OIDC verification. Its rules:

- A fetched key set is used for ``jwks_cache_s``, then fetched again.
- A token whose ``kid`` is unknown may trigger a refetch (the IdP rotated its
  keys), but at most one fetch per ``min_refetch_s`` (30 s) of any kind, so a
  stream of tokens with invented ``kid``s cannot turn into a stream of fetches.
- Concurrent callers share one fetch (a lock, and a re-check after it).
- If a refresh fails while we hold keys, the old keys stay in use (logged) for
  up to ``_MAX_STALE_S`` past their expiry and a refresh is retried after
  ``min_refetch_s``: an IdP blip must not lock admins out. With no keys at
  all, the failure is ``Unavailable`` (503) naming the JWKS source, and the
  next attempt waits ``_COLD_RETRY_S``.
- Only asymmetric public keys for allowed algorithms are kept: ``oct``
  (shared-secret) keys, encryption keys and private keys are dropped, so no
  JWK can ever act as an HMAC secret.

aiohttp is imported only by the default fetcher: it is a dev dependency of
this project, and a deployment reading the JWKS from a file does not need it.
Nothing here reads tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jwt import PyJWK, PyJWTError

from inferenceops.errors import Unavailable

log = logging.getLogger("inferenceops.admin.oidc")

#: ``await http_get(url, timeout_s)`` returns the body of a 200 response; on failure it
#: raises ``JWKSFetchError``, ``OSError`` or ``TimeoutError``.
HTTPGet = Callable[[str, float], Awaitable[bytes]]

MAX_JWKS_BYTES = 1024 * 1024
_COLD_RETRY_S = 5.0
_MAX_STALE_S = 3600.0

# Which JWS algorithms a key of (kty, crv) can verify.
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_COMPATIBLE: Mapping[tuple[str, str | None], frozenset[str]] = {
    ("RSA", None): _RSA_ALGS,
    ("EC", "P-256"): frozenset({"ES256"}),
    ("EC", "P-384"): frozenset({"ES384"}),
    ("EC", "P-521"): frozenset({"ES512"}),
    ("OKP", "Ed25519"): frozenset({"EdDSA"}),
    ("OKP", "Ed448"): frozenset({"EdDSA"}),
}


class JWKSFetchError(Exception):
    """A JWKS fetch failed; the message says why (status, timeout, size) and is safe to show."""


@dataclass(frozen=True)
class KeySet:
    """Usable verification keys by ``kid`` then algorithm. A JWK without ``kid`` is under ""."""

    keys: Mapping[str, Mapping[str, PyJWK]]
    loaded_at: float

    def resolve_kid(self, kid: str | None) -> str | None:
        """The ``kid`` to use: a token without one may use the set's only key."""
        if kid is not None:
            return kid if kid in self.keys else None
        return next(iter(self.keys)) if len(self.keys) == 1 else None

    def key(self, kid: str, alg: str) -> PyJWK | None:
        return self.keys.get(kid, {}).get(alg)


def parse_jwks(body: bytes, algorithms: tuple[str, ...]) -> dict[str, Mapping[str, PyJWK]]:
    """The usable keys of a JWKS document; ``ValueError`` when it is not one or has none."""
    try:
        document = json.loads(body)
    except ValueError:
        raise ValueError("not valid JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWK set (no "keys" list)')
    keys: dict[str, dict[str, PyJWK]] = {}
    for jwk in document["keys"]:
        kid = jwk.get("kid", "") if isinstance(jwk, dict) else None
        if not isinstance(kid, str):
            continue
        for alg in _usable_algorithms(jwk, algorithms):
            try:
                keys.setdefault(kid, {}).setdefault(alg, PyJWK(jwk, algorithm=alg))
            except (PyJWTError, ValueError, TypeError, KeyError) as exc:
                log.warning("JWKS key %r unusable for %s: %s", kid, alg, exc)
    usable: dict[str, Mapping[str, PyJWK]] = {
        kid: MappingProxyType(by_alg) for kid, by_alg in keys.items() if by_alg}
    if not usable:
        raise ValueError(f"no usable signing key for {', '.join(algorithms)}")
    return usable


def _usable_algorithms(jwk: dict[str, Any], algorithms: tuple[str, ...]) -> list[str]:
    if jwk.get("use", "sig") != "sig" or "d" in jwk:  # encryption keys, private keys
        return []
    kty = jwk.get("kty")
    crv = None if kty == "RSA" else jwk.get("crv")
    if not isinstance(kty, str) or not isinstance(crv, str | None):  # a JSON list is unhashable
        return []
    compatible = _COMPATIBLE.get((kty, crv), frozenset())
    declared = jwk.get("alg")
    return [alg for alg in algorithms
            if alg in compatible and (declared is None or declared == alg)]


async def aiohttp_get(url: str, timeout_s: float) -> bytes:
    """The default fetcher: one GET, no redirects, at most ``MAX_JWKS_BYTES``."""
    import aiohttp  # noqa: PLC0415 - optional dependency, needed only for jwks_url

    try:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(url, allow_redirects=False,
                            headers={"Accept": "application/json"}) as response:
            if response.status != 200:
                raise JWKSFetchError(f"HTTP {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JWKSFetchError(f"larger than {MAX_JWKS_BYTES} bytes")
            return bytes(body)
    except aiohttp.ClientError as exc:
        raise JWKSFetchError(f"{type(exc).__name__}: {exc}") from exc


def default_http_get() -> HTTPGet:
    """``aiohttp_get``, or a start-up error saying aiohttp is missing."""
    try:
        import aiohttp  # noqa: F401, PLC0415
    except ImportError:
        raise RuntimeError("OIDC with jwks_url needs aiohttp: pip install aiohttp "
                           "(or use jwks_file)") from None
    return aiohttp_get


class JWKSCache:
    """The current key set of one issuer; see the module docstring for the refresh rules."""

    def __init__(self, *, url: str | None, file: Path | None, algorithms: tuple[str, ...],
                 cache_s: float, timeout_s: float, http_get: HTTPGet | None,
                 clock: Callable[[], float], min_refetch_s: float = 30.0) -> None:
        if (url is None) == (file is None):
            raise ValueError("exactly one of url and file")
        self._url = url
        self._file = file
        self._source = url if url is not None else str(file)
        self._algorithms = algorithms
        self._cache_s = cache_s
        self._timeout_s = timeout_s
        self._http_get = http_get if http_get is not None or url is None else default_http_get()
        self._clock = clock
        self._min_refetch_s = min_refetch_s
        self._lock = asyncio.Lock()
        self._keyset: KeySet | None = None
        self._refresh_at = 0.0  # when the held keys (or the last failure) expire
        self._last_fetch_at = float("-inf")
        self._error: str | None = None  # why the last fetch without keys failed

    async def current(self) -> KeySet:
        """The key set to verify with now, fetching it when missing or expired."""
        keyset = self._keyset
        if keyset is not None and self._clock() < self._refresh_at:
            return keyset
        async with self._lock:
            if self._keyset is not None and self._clock() < self._refresh_at:
                return self._keyset
            if self._keyset is None and self._error is not None and self._clock() < self._refresh_at:
                raise Unavailable(self._error)
            return await self._refresh()

    async def refetch_for_unknown_kid(self, seen: KeySet) -> KeySet | None:
        """A newer key set than ``seen``, fetched unless one was fetched lately; None if none."""
        if self._keyset is not seen:
            return self._keyset
        if self._clock() - self._last_fetch_at < self._min_refetch_s:
            return None
        async with self._lock:
            if self._keyset is not seen:  # another request refetched while we waited
                return self._keyset
            if self._clock() - self._last_fetch_at < self._min_refetch_s:
                return None
            fresh = await self._refresh()
            return fresh if fresh is not seen else None

    async def _refresh(self) -> KeySet:
        """Fetch and swap in a new key set; callers hold the lock."""
        now = self._last_fetch_at = self._clock()
        try:
            keys = parse_jwks(await self._fetch(), self._algorithms)
        except (JWKSFetchError, OSError, TimeoutError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
            message = f"cannot load the OIDC signing keys from {self._source}: {reason}"
            held = self._keyset
            if held is not None and now - held.loaded_at < self._cache_s + _MAX_STALE_S:
                log.warning("%s; still using the keys loaded %.0f s ago", message,
                            now - held.loaded_at)
                self._refresh_at = now + self._min_refetch_s
                return held
            self._keyset, self._error = None, message
            self._refresh_at = now + _COLD_RETRY_S
            raise Unavailable(message) from exc
        self._keyset = KeySet(MappingProxyType(keys), now)
        self._refresh_at, self._error = now + self._cache_s, None
        return self._keyset

    async def _fetch(self) -> bytes:
        if self._file is not None:
            return await asyncio.to_thread(_read_limited, self._file)
        assert self._url is not None and self._http_get is not None
        async with asyncio.timeout(self._timeout_s):  # even an injected fetcher may not hang us
            return await self._http_get(self._url, self._timeout_s)


def _read_limited(path: Path) -> bytes:
    with path.open("rb") as file:
        body = file.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise JWKSFetchError(f"larger than {MAX_JWKS_BYTES} bytes")
    return body
