"""Settings for people signing in to the admin API: OIDC bearer tokens, a trusted auth proxy.

Validated, frozen pydantic models that ``settings.Settings`` holds
(``INFERENCEOPS_OIDC__…``, ``INFERENCEOPS_PROXY_AUTH__…``) and the admin side's
authenticators read (``admin.oidc``, ``admin.proxy_auth``, ``admin.human_auth``).
Here, below both, so process settings never import the admin application. No I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

# The principal's roles, strongest first (a test keeps them equal to TEAM_ROLES / PLATFORM_ROLES).
TeamRole = Literal["owner", "member", "viewer"]
PlatformRole = Literal["platform-admin", "auditor", "billing"]

#: Asymmetric JWS algorithms we can verify with a JWKS public key.
SUPPORTED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                  "ES256", "ES384", "ES512", "EdDSA"})
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an RFC 9110 token
_LOOPBACK_HOSTS = ("localhost",)
#: The issuer of identities the trusted auth proxy vouches for (the subject is its user header),
#: in sign-in links; no OIDC issuer may be configured under this name.
PROXY_ISSUER = "proxy"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TeamMapping(_Frozen):
    """Members of IdP ``group`` get ``role`` in ``team`` (a team id or name, kept as written)."""

    group: str = Field(min_length=1)
    team: str = Field(min_length=1)
    role: TeamRole


class PlatformMapping(_Frozen):
    """Members of IdP ``group`` get the platform-wide ``platform_role``."""

    group: str = Field(min_length=1)
    platform_role: PlatformRole


def _mapping_kind(value: Any) -> str | None:
    # Choose the model from the keys present, so a bad role gets one error, not one per union arm.
    keys = value.keys() if isinstance(value, Mapping) else vars(value).keys()
    if "platform_role" in keys and "team" not in keys:
        return "platform"
    if "team" in keys or "role" in keys:
        return "team"
    return None


GroupMapping = Annotated[
    Annotated[TeamMapping, Tag("team")] | Annotated[PlatformMapping, Tag("platform")],
    Discriminator(_mapping_kind, custom_error_type="group_mapping",
                  custom_error_message="a group mapping is either {group, team, role} "
                                       "or {group, platform_role}"),
]


class _HumanAuthConfig(_Frozen):
    group_mappings: tuple[GroupMapping, ...] = ()
    provision_users: bool = Field(False, description="Create a user row on the first sign-in "
                                  "of a verified email that has none (no roles of its own).")


class OIDCConfig(_HumanAuthConfig):
    """How to verify bearer JWTs from one OIDC issuer."""

    issuer: str = Field(min_length=1, description="Expected `iss`, exactly as the IdP writes it.")
    audience: str | tuple[str, ...] = Field(description="Accepted `aud` value(s).")
    jwks_url: str | None = Field(None, description="https URL of the IdP's JWKS (http only "
                                 "for loopback).")
    jwks_file: Path | None = Field(None, description="A local JWKS file, instead of jwks_url.")
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    groups_claim: str = Field("groups", min_length=1, description="Claim listing the user's "
                              "groups; a dotted path (realm_access.roles) reaches nested claims.")
    user_claim: str = Field("email", min_length=1, description="Claim naming the user; `sub` "
                            "when absent.")
    leeway_s: float = Field(30.0, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat.")
    jwks_cache_s: float = Field(300.0, ge=30, le=86_400, description="How long fetched keys "
                                "are used before they are fetched again.")
    jwks_timeout_s: float = Field(5.0, gt=0, le=60, description="Timeout of one JWKS fetch.")
    assume_email_verified: bool = Field(False, description="The IdP only issues verified "
                                        "emails: link a token without an email_verified claim "
                                        "to the user with its email (never one that says false).")
    authorized_parties: tuple[str, ...] | None = Field(
        None, description="Accepted `azp` values of a token whose `aud` lists several audiences "
        "(such a token must name one); unset: the accepted audiences.")
    max_token_lifetime_s: float | None = Field(
        None, gt=0, le=30 * 86_400, description="Refuse tokens issued for longer than this "
        "(`exp` − `iat`); unset: any lifetime the IdP chose.")

    @field_validator("issuer")
    @classmethod
    def _not_the_proxy(cls, value: str) -> str:
        if value == PROXY_ISSUER:
            raise ValueError(f"{PROXY_ISSUER!r} names the trusted auth proxy's identities in "
                             "sign-in links; use the issuer's URL")
        return value

    @field_validator("audience")
    @classmethod
    def _audience_given(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        values = (value,) if isinstance(value, str) else value
        if not values or not all(values):
            raise ValueError("must name at least one audience, none empty")
        return value

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must allow at least one algorithm")
        for alg in value:
            if alg.lower() == "none":
                raise ValueError("'none' means unsigned tokens and is never accepted")
            if alg.upper().startswith("HS"):
                raise ValueError(f"{alg!r} is a shared-secret (HMAC) algorithm; OIDC tokens "
                                 "are verified with the IdP's public keys, and allowing HS* "
                                 "opens the key-confusion attack")
            if alg not in SUPPORTED_ALGORITHMS:
                raise ValueError(f"{alg!r} is not supported; choose from "
                                 f"{', '.join(sorted(SUPPORTED_ALGORITHMS))}")
        return tuple(dict.fromkeys(value))

    @field_validator("jwks_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            # Keys fetched over plain HTTP can be swapped in transit: whoever does that
            # signs their own admin tokens.
            raise ValueError("must use https (plain http is allowed only for loopback)")
        return value

    @model_validator(mode="after")
    def _one_jwks_source(self) -> OIDCConfig:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError("set exactly one of jwks_url and jwks_file")
        return self

    @property
    def audiences(self) -> tuple[str, ...]:
        return (self.audience,) if isinstance(self.audience, str) else self.audience

    @property
    def accepted_parties(self) -> tuple[str, ...]:
        """The ``azp`` values a token with several audiences may name."""
        return self.authorized_parties if self.authorized_parties is not None else self.audiences

    @property
    def jwks_source(self) -> str:
        """The JWKS URL or file, for messages."""
        return self.jwks_url if self.jwks_url is not None else str(self.jwks_file)


class ProxyAuthConfig(_HumanAuthConfig):
    """Trust identity headers, but only from the reverse proxies listed here.

    The proxy must overwrite (not append to) these headers on every request;
    otherwise a client can send its own.
    """

    user_header: str = Field(description="Header naming the user, e.g. x-forwarded-email.")
    groups_header: str | None = Field(None, description="Header with comma-separated groups.")
    trusted_proxies: tuple[str, ...] = Field(min_length=1, description="CIDRs of the proxies.")

    @field_validator("user_header", "groups_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not _HEADER_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid HTTP header name")
        return value.lower() if value is not None else None

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_cidrs(value)

    @model_validator(mode="after")
    def _distinct_headers(self) -> ProxyAuthConfig:
        if self.groups_header == self.user_header:
            raise ValueError("user_header and groups_header must differ")
        return self


def check_cidrs(value: tuple[str, ...]) -> tuple[str, ...]:
    """Trusted-proxy CIDRs: each a network (host bits clear), none that trusts every address."""
    for cidr in value:
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            raise ValueError(f"{cidr!r} is not a CIDR ({exc})") from None
        if network.prefixlen == 0:
            raise ValueError(f"{cidr!r} trusts every address, so any client could "
                             "choose who it is")
    return value


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
