"""OIDC bearer-token authentication: keys made here, JWKS served on 127.0.0.1 or from a file."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from inferenceops.admin._jwks import parse_jwks
from inferenceops.admin.human_auth import map_groups
from inferenceops.admin.oidc import OIDCAuthenticator, looks_like_jwt
from inferenceops.admin.principal import PLATFORM_ROLES, TEAM_ROLES
from inferenceops.errors import AuthenticationFailed, Unavailable
from inferenceops.signin_settings import OIDCConfig, PlatformRole, TeamRole

ISSUER = "https://idp.example.com/realms/ops"
AUDIENCE = "inferenceops-admin"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
MAPPINGS = [
    {"group": "ops-admins", "platform_role": "platform-admin"},
    {"group": "auditors", "platform_role": "auditor"},
    {"group": "finance", "platform_role": "billing"},
    {"group": "ml-team", "team": "team_ml", "role": "member"},
    {"group": "ml-leads", "team": "team_ml", "role": "owner"},
    {"group": "readers", "team": "Research", "role": "viewer"},
]


def jwk(key: Any, kid: str, **extra: Any) -> dict[str, Any]:
    public = key.public_key()
    algorithm = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
    return {**algorithm.to_jwk(public, as_dict=True), "kid": kid, "use": "sig", **extra}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-123", "email": "ada@example.com",
            "email_verified": True, "iat": now, "exp": now + 300, "groups": ["ml-team"]}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def token(key: Any = RSA_KEY, kid: str | None = "k1", alg: str = "RS256", **overrides: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers=headers)


def bearer(value: str) -> str:
    return f"Bearer {value}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def config(**overrides: Any) -> OIDCConfig:
    values: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE,
                              "jwks_url": "https://idp.example.com/jwks",
                              "group_mappings": MAPPINGS}
    values.update(overrides)
    return OIDCConfig(**values)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class JWKSServer:
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": [jwk(RSA_KEY, "k1"),
                                                                    jwk(EC_KEY, "e1")]})
    status: int = 200
    requests: int = 0
    url: str = ""


@pytest.fixture
async def server() -> AsyncIterator[JWKSServer]:
    state = JWKSServer()

    async def handler(request: web.Request) -> web.Response:
        state.requests += 1
        if state.status != 200:
            return web.Response(status=state.status, text="down")
        return web.json_response(state.jwks)

    app = web.Application()
    app.router.add_get("/jwks", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/jwks"
    yield state
    await runner.cleanup()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(server: JWKSServer, clock: Clock) -> OIDCAuthenticator:
    return OIDCAuthenticator(config(jwks_url=server.url), clock=clock)


async def rejected(auth: OIDCAuthenticator, authorization: str | None) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        await auth.authenticate(authorization, source="10.0.0.9")
    error = caught.value
    assert error.status == 401
    credential = (authorization or "").partition(" ")[2].strip()
    if len(credential) > 8:
        assert credential not in error.message  # never echo the token
    return error.message


# --- the happy path ----------------------------------------------------------------------------


async def test_valid_token_maps_groups_to_roles(auth: OIDCAuthenticator) -> None:
    groups = ["ml-team", "ml-leads", "readers", "auditors", "ops-admins", "finance", "unmapped"]
    identity = await auth.identify(bearer(token(groups=groups)), source="10.0.0.9")
    principal = identity.principal
    assert principal.actor == f"oidc:{ISSUER}#u-123"
    assert principal.user_id is None
    assert principal.platform_role == "platform-admin"  # strongest of admin, auditor, billing
    assert dict(principal.team_roles) == {"team_ml": "owner", "Research": "viewer"}  # names kept
    assert principal.source == "10.0.0.9"
    assert (identity.subject, identity.user, identity.email) == ("u-123", "ada@example.com",
                                                                 "ada@example.com")
    assert identity.email_verified is True and identity.issuer == ISSUER
    assert identity.groups == tuple(groups)


@pytest.mark.parametrize(("verified", "assume", "expected"), [
    (True, False, "ada@example.com"), (False, False, None), (None, False, None),
    (None, True, "ada@example.com"),
    # Only a JSON boolean counts: a string (even "true") or a number is "not verified", and the
    # operator's assume_email_verified does not turn it into a yes.
    ("true", False, None), ("true", True, None), ("false", True, None), ("yes", False, None),
    (1, True, None),
])
async def test_verified_email(auth: OIDCAuthenticator, verified: Any, assume: bool,
                              expected: str | None) -> None:
    """What may link to a user row: never an email the IdP has not said, as a boolean, it verified."""
    identity = await auth.identify(bearer(token(email_verified=verified, name="Ada L.")), source=None)
    assert identity.verified_email(assume_verified=assume) == expected
    assert identity.name == "Ada L."


async def test_ec_key_and_no_groups(auth: OIDCAuthenticator) -> None:
    principal = await auth.authenticate(bearer(token(EC_KEY, "e1", "ES256", groups=None)),
                                        source=None)
    assert principal.platform_role is None and dict(principal.team_roles) == {}


async def test_weaker_platform_roles_rank(auth: OIDCAuthenticator) -> None:
    both = await auth.authenticate(bearer(token(groups=["finance", "auditors"])), source=None)
    assert both.platform_role == "auditor"
    billing = await auth.authenticate(bearer(token(groups=["finance"])), source=None)
    assert billing.platform_role == "billing"


async def test_user_claim_falls_back_to_sub_and_nested_groups(server: JWKSServer) -> None:
    auth = OIDCAuthenticator(config(jwks_url=server.url, groups_claim="realm_access.roles",
                                    user_claim="preferred_username"))
    identity = await auth.identify(bearer(token(email=None, groups=None,
                                                realm_access={"roles": ["auditors"]})),
                                   source=None)
    assert identity.user == "u-123" and identity.email is None
    assert identity.principal.platform_role == "auditor"


async def test_audience_lists_on_both_sides(server: JWKSServer) -> None:
    auth = OIDCAuthenticator(config(jwks_url=server.url, audience=["other", AUDIENCE]))
    await auth.authenticate(bearer(token(aud=["account", AUDIENCE], azp=AUDIENCE)), source=None)
    await auth.authenticate(bearer(token(aud=[AUDIENCE, AUDIENCE])), source=None)  # one, twice


@pytest.mark.parametrize(("aud", "azp", "parties", "accepted"), [
    (AUDIENCE, None, None, True),  # one audience: azp is not needed
    ([AUDIENCE], "someone-else", None, True),  # ... nor checked
    (["account", AUDIENCE], None, None, False),  # several: azp must say who it was issued to
    (["account", AUDIENCE], "account", None, False),  # ... and be a party accepted here
    (["account", AUDIENCE], AUDIENCE, None, True),  # the audiences are accepted by default
    (["account", AUDIENCE], "ops-cli", ("ops-cli",), True),  # or the configured parties
    (["account", AUDIENCE], AUDIENCE, ("ops-cli",), False),  # ... which then replace them
    (["account", AUDIENCE], ["ops-cli"], ("ops-cli",), False),  # azp is one string
])
async def test_several_audiences_need_an_authorized_party(
        server: JWKSServer, aud: Any, azp: Any, parties: tuple[str, ...] | None,
        accepted: bool) -> None:
    auth = OIDCAuthenticator(config(jwks_url=server.url, authorized_parties=parties))
    credential = bearer(token(aud=aud, azp=azp))
    if accepted:
        await auth.authenticate(credential, source=None)
    else:
        assert "no authorized party (azp)" in await rejected(auth, credential)


@pytest.mark.parametrize(("lifetime_s", "longest_s", "accepted"), [
    (3600, None, True), (86_400 * 365, None, True),  # no maximum: the IdP decides
    (3600, 3600, True), (3601, 3600, False), (86_400 * 365, 3600, False),
])
async def test_an_optional_maximum_token_lifetime(server: JWKSServer, lifetime_s: int,
                                                  longest_s: float | None, accepted: bool) -> None:
    auth = OIDCAuthenticator(config(jwks_url=server.url, max_token_lifetime_s=longest_s))
    now = int(time.time())
    credential = bearer(token(iat=now - 10, exp=now - 10 + lifetime_s))
    if accepted:
        await auth.authenticate(credential, source=None)
    else:
        assert "token lifetime (exp - iat) is longer than the 3600 s" in await rejected(auth, credential)


async def test_keys_are_cached(auth: OIDCAuthenticator, server: JWKSServer, clock: Clock) -> None:
    for _ in range(3):
        await auth.authenticate(bearer(token()), source=None)
    assert server.requests == 1
    clock.now += 301  # jwks_cache_s passed
    await auth.authenticate(bearer(token()), source=None)
    assert server.requests == 2


async def test_concurrent_cold_start_fetches_once(auth: OIDCAuthenticator,
                                                  server: JWKSServer) -> None:
    await asyncio.gather(*(auth.authenticate(bearer(token()), source=None) for _ in range(20)))
    assert server.requests == 1


# --- claims ------------------------------------------------------------------------------------


def _from_now(seconds: int) -> Callable[[], int]:
    """A timestamp taken when the test runs, not when it is collected (runs may start minutes later)."""
    return lambda: int(time.time()) + seconds


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"exp": _from_now(-120)}, "token expired"),
    ({"nbf": _from_now(120)}, "not yet valid"),
    ({"iat": _from_now(120)}, "not yet valid"),
    ({"iss": "https://evil.example.com"}, "wrong issuer"),
    ({"aud": "another-app"}, "wrong audience"),
    ({"aud": None}, "aud claim"),
    ({"exp": None}, "exp claim"),
    ({"iat": None}, "iat claim"),
    ({"sub": None}, "sub claim"),
    ({"sub": ""}, "sub claim is not 1 to 255 printable characters"),
    ({"sub": "s" * 256}, "sub claim is not 1 to 255 printable characters"),
    ({"sub": "admin\x00"}, "sub claim is not 1 to 255 printable characters"),
    ({"exp": lambda: str(_from_now(300)())}, "exp claim is not a number"),
    ({"iat": True}, "iat claim is not a number"),
    ({"nbf": lambda: str(_from_now(-10)())}, "nbf claim is not a number"),
    ({"sub": 5}, "malformed iat or sub"),
    ({"iat": "yesterday"}, "malformed iat or sub"),
    ({"exp": "tomorrow"}, "malformed exp"),
    ({"groups": {"not": "a list"}}, "groups claim"),
    ({"groups": ["ok", 7]}, "groups claim"),
])
async def test_bad_claims_are_refused(auth: OIDCAuthenticator, overrides: dict[str, Any],
                                      expected: str) -> None:
    resolved = {k: v() if callable(v) else v for k, v in overrides.items()}
    assert expected in await rejected(auth, bearer(token(**resolved)))


async def test_leeway_tolerates_small_skew(auth: OIDCAuthenticator) -> None:
    now = int(time.time())
    await auth.authenticate(bearer(token(exp=now - 10, nbf=now + 10, iat=now + 10)), source=None)


# --- signatures and keys -----------------------------------------------------------------------


async def test_tampered_payload(auth: OIDCAuthenticator) -> None:
    header, _, signature = token().split(".")
    payload = b64url(json.dumps(claims(groups=["ops-admins"])).encode())
    assert "bad signature" in await rejected(auth, bearer(f"{header}.{payload}.{signature}"))


async def test_other_key_with_the_same_kid(auth: OIDCAuthenticator) -> None:
    assert "bad signature" in await rejected(auth, bearer(token(RSA_OTHER, "k1")))


async def test_unknown_kid_refetches_once_per_window(auth: OIDCAuthenticator, server: JWKSServer,
                                                     clock: Clock) -> None:
    await auth.authenticate(bearer(token()), source=None)
    assert server.requests == 1
    # Right after a fetch an unknown kid does not fetch again.
    assert "unknown signing key" in await rejected(auth, bearer(token(RSA_OTHER, "nope")))
    assert server.requests == 1
    clock.now += 31
    assert "unknown signing key" in await rejected(auth, bearer(token(RSA_OTHER, "nope")))
    assert server.requests == 2  # one refetch
    clock.now += 10
    for kid in ("nope", "other", "third"):
        await rejected(auth, bearer(token(RSA_OTHER, kid)))
    assert server.requests == 2  # throttled: no fetch per request


async def test_concurrent_unknown_kids_share_one_refetch(auth: OIDCAuthenticator,
                                                         server: JWKSServer, clock: Clock) -> None:
    await auth.authenticate(bearer(token()), source=None)
    clock.now += 31
    results = await asyncio.gather(
        *(auth.authenticate(bearer(token(RSA_OTHER, f"x{i}")), source=None) for i in range(10)),
        return_exceptions=True)
    assert all(isinstance(result, AuthenticationFailed) for result in results)
    assert server.requests == 2


async def test_key_rotation(auth: OIDCAuthenticator, server: JWKSServer, clock: Clock) -> None:
    await auth.authenticate(bearer(token()), source=None)
    server.jwks = {"keys": [jwk(RSA_OTHER, "k2")]}
    clock.now += 31
    principal = await auth.authenticate(bearer(token(RSA_OTHER, "k2")), source=None)
    assert principal.actor.endswith("#u-123")
    assert server.requests == 2
    # The retired key is gone with the old key set.
    assert "unknown signing key" in await rejected(auth, bearer(token()))
    assert server.requests == 2


async def test_token_without_kid_uses_the_only_key(server: JWKSServer) -> None:
    server.jwks = {"keys": [jwk(RSA_KEY, "k1")]}
    auth = OIDCAuthenticator(config(jwks_url=server.url))
    await auth.authenticate(bearer(token(kid=None)), source=None)


async def test_token_without_kid_and_several_keys(auth: OIDCAuthenticator) -> None:
    assert "no kid" in await rejected(auth, bearer(token(kid=None)))


async def test_key_used_only_with_its_own_algorithm(server: JWKSServer) -> None:
    # RS384 allowed, but the JWK declares RS256: the token may not pick another algorithm.
    server.jwks = {"keys": [jwk(RSA_KEY, "k1", alg="RS256"), jwk(EC_KEY, "e1")]}
    auth = OIDCAuthenticator(config(jwks_url=server.url, algorithms=["RS256", "RS384", "ES256"]))
    message = await rejected(auth, bearer(token(alg="RS384")))
    assert "cannot be used with RS384" in message
    # An EC key cannot verify an RSA-algorithm token either.
    assert "cannot be used" in await rejected(auth, bearer(token(RSA_KEY, "e1")))


async def test_short_rsa_key_refused(server: JWKSServer) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    server.jwks = {"keys": [jwk(weak, "weak")]}
    auth = OIDCAuthenticator(config(jwks_url=server.url))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about signing with a short key
        signed = token(weak, "weak")
    assert "unusable" in await rejected(auth, bearer(signed))


# --- algorithm attacks -------------------------------------------------------------------------


def unsigned(alg: str, kid: str = "k1") -> str:
    header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    payload = b64url(json.dumps(claims(groups=["ops-admins"])).encode())
    return f"{header}.{payload}."


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none_refused_without_fetching(auth: OIDCAuthenticator, server: JWKSServer,
                                                 alg: str) -> None:
    assert "not allowed" in await rejected(auth, bearer(unsigned(alg)))
    assert server.requests == 0


async def test_hs256_signed_with_the_public_key_refused(auth: OIDCAuthenticator,
                                                        server: JWKSServer) -> None:
    # The classic key-confusion attack: HMAC keyed with the RSA public key (PEM and JWK forms).
    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    for secret in (pem, json.dumps(jwk(RSA_KEY, "k1")).encode()):
        signing_input = unsigned("HS256").rstrip(".")
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        message = await rejected(auth, bearer(f"{signing_input}.{b64url(mac)}"))
        assert "'HS256' is not allowed" in message
    assert server.requests == 0


def test_symmetric_and_private_jwks_are_dropped() -> None:
    keys = parse_jwks(json.dumps({"keys": [
        {"kty": "oct", "kid": "k1", "k": b64url(b"secret" * 8), "alg": "HS256"},
        {**jwk(RSA_KEY, "enc"), "use": "enc"},
        RSAAlgorithm.to_jwk(RSA_OTHER, as_dict=True) | {"kid": "private"},
        jwk(EC_KEY, "e1"),
    ]}).encode(), ("RS256", "ES256"))
    assert set(keys) == {"e1"} and set(keys["e1"]) == {"ES256"}


def test_jwks_keys_with_non_string_kty_or_crv_are_dropped() -> None:
    keys = parse_jwks(json.dumps({"keys": [
        {**jwk(EC_KEY, "bad-kty"), "kty": ["EC"]},
        {**jwk(EC_KEY, "bad-crv"), "crv": {"name": "P-256"}},
        jwk(EC_KEY, "e1"),
    ]}).encode(), ("ES256",))
    assert set(keys) == {"e1"}


# --- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [
    None, "", "   ", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer sk-io-abc",
    "Bearer a.b", "Bearer a.b.c.d.e", "Bearer " + "a" * 20_000 + ".b.c", "Bearer ..",
    "Bearer e30.e30.", "Bearer bm90IGpzb24.e30.c2ln", "Bearer W10.e30.c2ln",
])
async def test_malformed_authorization(auth: OIDCAuthenticator, server: JWKSServer,
                                       authorization: str | None) -> None:
    await rejected(auth, authorization)
    assert server.requests == 0


async def test_missing_header_asks_for_bearer(auth: OIDCAuthenticator) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        await auth.authenticate(None, source=None)
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}
    assert "missing" in caught.value.message


async def test_unreadable_payload(auth: OIDCAuthenticator) -> None:
    header, _, signature = token().split(".")
    # Signature first: an edited payload is a bad signature, whatever it holds.
    assert "bad signature" in await rejected(auth, bearer(f"{header}.bm90IGpzb24.{signature}"))
    signed_junk = jwt.api_jws.encode(b"not json", RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    assert "unreadable payload" in await rejected(auth, bearer(signed_junk))


def test_every_pyjwt_error_is_described() -> None:
    from jwt import exceptions

    from inferenceops.admin.oidc import _describe

    for error in vars(exceptions).values():
        if isinstance(error, type) and issubclass(error, exceptions.PyJWTError):
            instance = error("exp") if error is exceptions.MissingRequiredClaimError else error()
            assert _describe(instance)


def test_looks_like_jwt() -> None:
    assert looks_like_jwt(token())
    assert not looks_like_jwt("sk-io-abcdef")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=10)
HEADERS = st.fixed_dictionaries(
    {}, optional={"alg": st.sampled_from(["RS256", "ES256", "none", "HS256"]) | JSON,
                  "kid": st.sampled_from(["k1", "e1", "zz"]) | JSON,
                  "typ": JSON, "crit": JSON, "b64": JSON, "jku": JSON})
SEGMENTS = st.lists(st.binary(max_size=64).map(b64url), min_size=1, max_size=5).map(".".join)
STRUCTURED = st.tuples(HEADERS, st.dictionaries(st.text(max_size=8), JSON, max_size=6) | JSON,
                       st.binary(max_size=300)).map(
    lambda parts: ".".join([b64url(json.dumps(parts[0]).encode()),
                            b64url(json.dumps(parts[1]).encode()), b64url(parts[2])]))
# Shaped like the real thing (allowed alg, known kid), so junk reaches the signature check.
PLAUSIBLE = st.tuples(st.sampled_from([("RS256", "k1"), ("ES256", "e1"), ("RS256", "e1")]),
                      JSON, st.binary(max_size=300)).map(
    lambda parts: ".".join([b64url(json.dumps({"alg": parts[0][0], "kid": parts[0][1]}).encode()),
                            b64url(json.dumps(parts[1]).encode()), b64url(parts[2])]))
CLAIM_VALUES = JSON | st.sampled_from([ISSUER, AUDIENCE, [AUDIENCE], "ops-admins", ["ops-admins"]]) \
    | st.integers(int(time.time()) - 1000, int(time.time()) + 1000)
CLAIMS = st.dictionaries(st.sampled_from(["iss", "aud", "sub", "exp", "nbf", "iat", "groups",
                                          "email", "email_verified", "realm_access"]),
                         CLAIM_VALUES) | JSON
# Correctly signed, arbitrary claims: exercises every claim check after the signature.
SIGNED = CLAIMS.map(lambda payload: jwt.api_jws.encode(json.dumps(payload).encode(), EC_KEY,
                                                       algorithm="ES256", headers={"kid": "e1"}))
AUTHORIZATIONS = (st.text() | st.binary().map(lambda raw: raw.decode("latin-1"))
                  | st.text().map(bearer) | SEGMENTS.map(bearer) | STRUCTURED.map(bearer)
                  | PLAUSIBLE.map(bearer) | SIGNED.map(bearer))
STATIC_JWKS = json.dumps({"keys": [jwk(RSA_KEY, "k1"), jwk(EC_KEY, "e1")]}).encode()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(authorization=AUTHORIZATIONS)
def test_junk_only_ever_fails_authentication(authorization: str) -> None:
    async def check() -> None:
        async def http_get(url: str, timeout_s: float) -> bytes:
            return STATIC_JWKS

        auth = OIDCAuthenticator(config(), http_get=http_get)
        try:
            principal = await auth.authenticate(authorization, source=None)
        except AuthenticationFailed:
            return
        # Only a correctly signed token with every required claim right may pass.
        assert principal.actor.startswith(f"oidc:{ISSUER}#")

    asyncio.run(check())


# --- the JWKS source ---------------------------------------------------------------------------


async def test_jwks_server_down_is_unavailable(auth: OIDCAuthenticator, server: JWKSServer,
                                               clock: Clock) -> None:
    server.status = 500
    with pytest.raises(Unavailable) as caught:
        await auth.authenticate(bearer(token()), source=None)
    assert server.url in caught.value.message and "HTTP 500" in caught.value.message
    assert caught.value.status == 503
    with pytest.raises(Unavailable):  # remembered for a few seconds: no fetch per request
        await auth.authenticate(bearer(token()), source=None)
    assert server.requests == 1
    server.status = 200
    clock.now += 6
    await auth.authenticate(bearer(token()), source=None)
    assert server.requests == 2


async def test_oversized_jwks_is_unavailable(auth: OIDCAuthenticator, server: JWKSServer) -> None:
    server.jwks = {"keys": [jwk(RSA_KEY, "k1")], "padding": "x" * (1024 * 1024)}
    with pytest.raises(Unavailable, match="larger than"):
        await auth.authenticate(bearer(token()), source=None)


async def test_unreachable_jwks_is_unavailable(clock: Clock) -> None:
    auth = OIDCAuthenticator(config(jwks_url="http://127.0.0.1:9/jwks"), clock=clock)
    with pytest.raises(Unavailable, match=r"http://127\.0\.0\.1:9/jwks"):
        await auth.authenticate(bearer(token()), source=None)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"keys": []}',
                                  b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'])
async def test_useless_jwks_is_unavailable(body: bytes) -> None:
    async def http_get(url: str, timeout_s: float) -> bytes:
        return body

    with pytest.raises(Unavailable, match="idp.example.com/jwks"):
        await OIDCAuthenticator(config(), http_get=http_get).authenticate(bearer(token()),
                                                                          source=None)


async def test_hanging_fetch_times_out() -> None:
    async def http_get(url: str, timeout_s: float) -> bytes:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    auth = OIDCAuthenticator(config(jwks_timeout_s=0.05), http_get=http_get)
    with pytest.raises(Unavailable, match="TimeoutError"):
        await auth.authenticate(bearer(token()), source=None)


async def test_stale_keys_survive_an_idp_outage(auth: OIDCAuthenticator, server: JWKSServer,
                                                clock: Clock) -> None:
    await auth.authenticate(bearer(token()), source=None)
    server.status = 503
    clock.now += 301
    await auth.authenticate(bearer(token()), source=None)  # refresh fails, old keys still used
    await auth.authenticate(bearer(token()), source=None)
    assert server.requests == 2  # next retry waits min_refetch_s
    clock.now += 4000  # but not forever
    with pytest.raises(Unavailable):
        await auth.authenticate(bearer(token()), source=None)


async def test_jwks_file(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(RSA_KEY, "k1")]}))
    auth = OIDCAuthenticator(config(jwks_url=None, jwks_file=path), clock=clock)
    await auth.authenticate(bearer(token()), source=None)
    path.write_text(json.dumps({"keys": [jwk(RSA_KEY, "k1"), jwk(EC_KEY, "e1")]}))
    clock.now += 31
    await auth.authenticate(bearer(token(EC_KEY, "e1", "ES256")), source=None)


async def test_missing_jwks_file_is_unavailable(tmp_path: Path) -> None:
    auth = OIDCAuthenticator(config(jwks_url=None, jwks_file=tmp_path / "absent.json"))
    with pytest.raises(Unavailable, match="absent.json"):
        await auth.authenticate(bearer(token()), source=None)


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"jwks_file": "/etc/jwks.json"}, "exactly one of jwks_url and jwks_file"),
    ({"jwks_url": None}, "exactly one of jwks_url and jwks_file"),
    ({"algorithms": ["RS256", "none"]}, "never accepted"),
    ({"algorithms": ["HS256"]}, "shared-secret"),
    ({"algorithms": ["hs512"]}, "shared-secret"),
    ({"algorithms": ["RS1"]}, "not supported"),
    ({"algorithms": []}, "at least one algorithm"),
    ({"audience": []}, "at least one audience"),
    ({"audience": ""}, "at least one audience"),
    ({"jwks_url": "http://idp.example.com/jwks"}, "must use https"),
    ({"jwks_url": "https://user:pw@idp.example.com/jwks"}, "credentials"),
    ({"jwks_url": "file:///etc/jwks.json"}, "http(s) URL"),
    ({"group_mappings": [{"group": "g", "team": "t", "role": "admin"}]}, "'owner'"),
    ({"group_mappings": [{"group": "g", "platform_role": "root"}]}, "'platform-admin'"),
    ({"group_mappings": [{"group": "g", "team": "t", "role": "owner",
                          "platform_role": "auditor"}]}, "Extra inputs"),
    ({"group_mappings": [{"group": "g"}]}, "either {group, team, role}"),
    ({"group_mappings": [{"group": "", "platform_role": "auditor"}]}, "at least 1 character"),
    ({"leeway_s": -1}, "greater than or equal"),
    ({"jwks_cache_s": 1}, "greater than or equal to 30"),
    ({"issuer": None}, "issuer"),
    ({"issuer": "proxy"}, "trusted auth proxy"),
    ({"max_token_lifetime_s": 0}, "greater than 0"),
    ({"surprise": 1}, "Extra inputs"),
])
def test_config_validation(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(**overrides)
    assert expected in str(caught.value)


def test_config_defaults_and_loopback_http() -> None:
    cfg = OIDCConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url="http://localhost:8080/jwks")
    assert cfg.algorithms == ("RS256", "ES256") and cfg.groups_claim == "groups"
    assert (cfg.user_claim, cfg.leeway_s, cfg.jwks_cache_s) == ("email", 30.0, 300.0)
    assert cfg.group_mappings == ()
    with pytest.raises(ValidationError):
        cfg.issuer = "x"  # type: ignore[misc]  # frozen


def test_role_literals_match_the_principal() -> None:
    # map_groups ranks roles by their order in the principal's tuples.
    assert get_args(TeamRole) == TEAM_ROLES and get_args(PlatformRole) == PLATFORM_ROLES


def test_map_groups_is_pure_and_strongest_wins() -> None:
    mappings = config().group_mappings
    platform, teams = map_groups(["readers", "ml-team", "ml-leads"], mappings)
    assert platform is None and dict(teams) == {"team_ml": "owner", "Research": "viewer"}
    assert map_groups([], mappings) == (None, {})
