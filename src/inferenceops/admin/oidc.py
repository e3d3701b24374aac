"""OIDC bearer-token authentication for the admin API: a verified JWT becomes an ``AdminPrincipal``.

``OIDCAuthenticator.authenticate`` takes the ``Authorization`` header and
either returns a principal or raises ``AuthenticationFailed`` (401) saying what
was wrong, never echoing the token. ``Unavailable`` (503) means the issuer's
keys could not be loaded at all (see ``_jwks``). This is the adapter that owns
PyJWT: its exceptions are translated here and nowhere else.

Verification, in order (cheap checks first, so junk never costs a key fetch):

1. ``Bearer`` scheme, bounded size, compact JWS shape (``header.payload.signature``).
2. The header's ``alg`` must be in the configured allow-list, which can hold
   only asymmetric algorithms (``none`` and ``HS*`` are refused by
   ``OIDCConfig``); the header is otherwise not trusted.
3. The key is looked up by ``kid`` *and* ``alg``: each JWK is only ever used
   with the algorithms its key type supports (and its own ``alg`` if it
   declares one), so a public key can never be used as an HMAC secret.
4. PyJWT checks the signature, ``iss``, ``aud``, ``exp``, ``nbf`` and ``iat``
   (``leeway_s`` of clock skew); ``exp``, ``iat``, ``iss`` and ``sub`` are required.
5. A token whose ``aud`` lists several audiences must name an accepted ``azp``;
   with ``max_token_lifetime_s``, ``exp`` − ``iat`` must not exceed it; ``sub`` is
   1 to 255 printable characters; ``email_verified`` counts only as a JSON boolean.
6. The groups claim is mapped to roles (``human_auth.map_groups``).

No database access here; linking the identity to a user row is ``admin.linking``'s job.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import jwt
from jwt import exceptions as jwt_errors

from inferenceops.admin._jwks import HTTPGet, JWKSCache, KeySet
from inferenceops.admin.human_auth import HumanIdentity, build_principal
from inferenceops.admin.principal import AdminPrincipal
from inferenceops.errors import AuthenticationFailed
from inferenceops.signin_settings import OIDCConfig

MAX_TOKEN_CHARS = 16 * 1024
MAX_SUBJECT_CHARS = 255  # OIDC Core: sub "MUST NOT exceed 255 ASCII characters"
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_PRINTABLE_ALG = re.compile(r"[A-Za-z0-9]{1,16}")
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub"]


def looks_like_jwt(token: str) -> bool:
    """Whether a bearer credential has the shape of a JWT (an API key does not)."""
    return len(token) <= MAX_TOKEN_CHARS and _COMPACT_JWS.fullmatch(token) is not None


class OIDCAuthenticator:
    """Verifies bearer JWTs of one issuer; one instance per process, safe to share."""

    def __init__(self, config: OIDCConfig, *, http_get: HTTPGet | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._keys = JWKSCache(url=config.jwks_url, file=config.jwks_file,
                               algorithms=config.algorithms, cache_s=config.jwks_cache_s,
                               timeout_s=config.jwks_timeout_s, http_get=http_get, clock=clock)

    async def authenticate(self, authorization: str | None, *, source: str | None) -> AdminPrincipal:
        return (await self.identify(authorization, source=source)).principal

    async def identify(self, authorization: str | None, *, source: str | None) -> HumanIdentity:
        """The principal plus the identity claims (subject, email) of a valid bearer token."""
        token = _bearer_token(authorization)
        alg, kid = self._checked_header(token)
        key = await self._signing_key(kid, alg)
        claims = self._verified_claims(token, key, alg)
        return self._identity(claims, source)

    def _checked_header(self, token: str) -> tuple[str, str | None]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt_errors.PyJWTError:
            _fail("malformed token: unreadable header")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.config.algorithms:
            shown = f" {alg!r}" if isinstance(alg, str) and _PRINTABLE_ALG.fullmatch(alg) else ""
            _fail(f"token signing algorithm{shown} is not allowed "
                  f"(allowed: {', '.join(self.config.algorithms)})")
        return alg, header.get("kid")  # PyJWT has checked that a kid is a string

    async def _signing_key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        keyset = await self._keys.current()
        found = keyset.resolve_kid(kid)
        if found is None and kid is not None:
            newer: KeySet | None = await self._keys.refetch_for_unknown_kid(keyset)
            if newer is not None:
                keyset, found = newer, newer.resolve_kid(kid)
        if found is None:
            _fail("token signed with an unknown signing key (its kid is not in the issuer's JWKS)"
                  if kid is not None else
                  "token has no kid header and the issuer's JWKS holds several keys")
        key = keyset.key(found, alg)
        if key is None:
            _fail(f"the signing key named by the token's kid cannot be used with {alg}")
        return key

    def _verified_claims(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=key, algorithms=[alg], audience=self.config.audiences,
                issuer=self.config.issuer, leeway=self.config.leeway_s,
                options={"require": _REQUIRED_CLAIMS, "enforce_minimum_key_length": True})
        except jwt_errors.PyJWTError as exc:
            _fail(_describe(exc))
        for name in ("exp", "iat", "nbf"):  # PyJWT also takes "1700000000" and true
            value = claims.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                _fail(f"token's {name} claim is not a number")
        self._check_authorized_party(claims)
        self._check_lifetime(claims)
        return claims

    def _check_authorized_party(self, claims: Mapping[str, Any]) -> None:
        """A token for several audiences must say which client it was issued to (OIDC Core
        3.1.3.7): else a token another relying party obtained would be good here too."""
        audience = claims.get("aud")
        if isinstance(audience, list) and len(set(audience)) > 1:
            party = claims.get("azp")
            if not isinstance(party, str) or party not in self.config.accepted_parties:
                _fail("token names several audiences but no authorized party (azp) accepted here")

    def _check_lifetime(self, claims: Mapping[str, Any]) -> None:
        longest = self.config.max_token_lifetime_s
        if longest is not None and claims["exp"] - claims["iat"] > longest:
            _fail(f"token lifetime (exp - iat) is longer than the {longest:g} s accepted here")

    def _identity(self, claims: Mapping[str, Any], source: str | None) -> HumanIdentity:
        subject = claims["sub"]
        if not subject or len(subject) > MAX_SUBJECT_CHARS or not subject.isprintable():
            _fail(f"token's sub claim is not 1 to {MAX_SUBJECT_CHARS} printable characters")
        user = claims.get(self.config.user_claim)
        email = claims.get("email")
        name = claims.get("name")
        groups = _groups(claims, self.config.groups_claim)
        principal = build_principal(f"oidc:{self.config.issuer}#{subject}", groups,
                                    self.config.group_mappings, source)
        return HumanIdentity(
            principal=principal, subject=subject,
            user=user if isinstance(user, str) and user else subject,
            email=email if isinstance(email, str) and email else None,
            email_verified=_email_verified(claims),
            issuer=self.config.issuer, groups=groups,
            name=name if isinstance(name, str) and name else None,
        )


def _bearer_token(authorization: str | None) -> str:
    if authorization is None or not authorization.strip():
        raise AuthenticationFailed("missing Authorization header", code="invalid_token",
                                   headers={"WWW-Authenticate": "Bearer"})
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        _fail("expected an Authorization: Bearer token")
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS:
        _fail(f"token is larger than {MAX_TOKEN_CHARS} characters")
    if not _COMPACT_JWS.fullmatch(token):
        _fail("malformed token: expected a signed JWT (header.payload.signature)")
    return token


def _describe(exc: jwt_errors.PyJWTError) -> str:
    """What was wrong, in words that name no token content."""
    match exc:
        case jwt_errors.ExpiredSignatureError():
            return "token expired"
        case jwt_errors.ImmatureSignatureError():
            return "token not yet valid (nbf or iat is in the future)"
        case jwt_errors.InvalidAudienceError():
            return "token has the wrong audience"
        case jwt_errors.InvalidIssuerError():
            return "token has the wrong issuer"
        case jwt_errors.MissingRequiredClaimError():
            return f"token lacks the required {exc.claim} claim"
        case jwt_errors.InvalidSignatureError():
            return "token has a bad signature"
        case jwt_errors.InvalidAlgorithmError():
            return "token signing algorithm does not match its key"
        case jwt_errors.InvalidKeyError():
            return "the issuer's signing key is unusable (too short or malformed)"
        case jwt_errors.InvalidIssuedAtError() | jwt_errors.InvalidSubjectError():
            return "token has a malformed iat or sub claim"
        case jwt_errors.DecodeError():
            return "malformed token: unreadable payload or malformed exp/nbf claim"
        case _:
            return f"invalid token ({type(exc).__name__})"


def _groups(claims: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = _claim(claims, name)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(group, str) for group in value):
        return tuple(value)
    _fail(f"token's {name} claim is not a list of group names")


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """``claims[name]``, else the dotted path (Keycloak's realm_access.roles); None if absent.

    The exact name wins: namespaced claims such as ``https://example.com/groups`` contain dots.
    """
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _email_verified(claims: Mapping[str, Any]) -> bool | None:
    """The ``email_verified`` claim: a JSON boolean, None when absent, and anything else (the
    string "true" included) False — an email only ever links when the IdP said true, properly."""
    if "email_verified" not in claims:
        return None
    value = claims["email_verified"]
    return value if isinstance(value, bool) else False


def _fail(message: str) -> NoReturn:
    raise AuthenticationFailed(message, code="invalid_token",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
