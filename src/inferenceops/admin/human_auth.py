"""Human authentication for the admin API: the settings, the group mapping, the result type.

Two authenticators turn a person into an ``AdminPrincipal``:

- ``inferenceops.admin.oidc.OIDCAuthenticator`` – a bearer JWT from an OIDC
  identity provider, verified against the provider's JWKS;
- ``inferenceops.admin.proxy_auth.ProxyHeaderAuthenticator`` – an identity
  header set by a trusted authenticating reverse proxy (oauth2-proxy, an
  ingress with external auth, …).

This module holds what both share, and nothing that does I/O: the validated,
frozen settings models (``OIDCConfig``, ``ProxyAuthConfig``), the pure
``map_groups`` policy that turns IdP groups into roles, and ``HumanIdentity``,
the principal plus the identity claims the admin layer needs to link a person
to a user row (``inferenceops.admin.linking`` does that, against the store).

Team mappings name a team by id *or* name, exactly as the operator wrote it;
``AdminPrincipal.team_roles`` is keyed by that value. Resolving names to team
ids is the admin layer's job (it owns the store); nothing here looks teams up.
Group names are matched exactly (case-sensitive), as IdPs emit them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from inferenceops.admin.principal import PLATFORM_ROLES, TEAM_ROLES, AdminPrincipal

# The principal's roles, strongest first (a test keeps them equal to TEAM_ROLES / PLATFORM_ROLES).
TeamRole = Literal["owner", "member", "viewer"]
PlatformRole = Literal["platform-admin", "auditor", "billing"]

#: Asymmetric JWS algorithms we can verify with a JWKS public key.
SUPPORTED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                  "ES256", "ES384", "ES512", "EdDSA"})
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an RFC 9110 token
_LOOPBACK_HOSTS = ("localhost",)


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
        for cidr in value:
            try:
                network = ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a CIDR ({exc})") from None
            if network.prefixlen == 0:
                raise ValueError(f"{cidr!r} trusts every address, so any client could "
                                 "choose who it is")
        return value

    @model_validator(mode="after")
    def _distinct_headers(self) -> ProxyAuthConfig:
        if self.groups_header == self.user_header:
            raise ValueError("user_header and groups_header must differ")
        return self

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(cidr) for cidr in self.trusted_proxies)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def map_groups(groups: Iterable[str], mappings: Iterable[TeamMapping | PlatformMapping]
               ) -> tuple[str | None, Mapping[str, str]]:
    """(platform role, {team: role}) for a user in ``groups``: the strongest grant wins."""
    member_of = set(groups)
    platform: str | None = None
    teams: dict[str, str] = {}
    for mapping in mappings:
        if mapping.group not in member_of:
            continue
        if isinstance(mapping, PlatformMapping):
            platform = stronger_role(PLATFORM_ROLES, platform, mapping.platform_role)
        else:
            teams[mapping.team] = stronger_role(TEAM_ROLES, teams.get(mapping.team), mapping.role)
    return platform, MappingProxyType(teams)


def stronger_role(ranking: tuple[str, ...], current: str | None, candidate: str) -> str:
    """The stronger of two roles of ``ranking`` (strongest first); ``current`` None is no role.

    Each role in ``PLATFORM_ROLES``, and in ``TEAM_ROLES``, allows everything the ones after
    it allow (``admin.api.deps``' tables), so the stronger one is the one that allows more.
    """
    if current is None or ranking.index(candidate) < ranking.index(current):
        return candidate
    return current


@dataclass(frozen=True)
class HumanIdentity:
    """An authenticated person: the principal, and who they are according to the IdP/proxy.

    ``user`` is what the operator chose to name users by (the ``user_claim``,
    e.g. the email, else ``sub``; the proxy's user header). Link to a user row
    only by ``verified_email``: an IdP that lets people type any address would
    otherwise let them take over the user that has it.
    """

    principal: AdminPrincipal
    subject: str  # `sub` (OIDC) or the user header (proxy): stable within its issuer
    user: str
    email: str | None = None
    email_verified: bool | None = None  # True for the proxy: it is trusted to have checked
    issuer: str | None = None  # None for proxy-header identities
    groups: tuple[str, ...] = ()
    name: str | None = None  # the `name` claim, a display name

    def verified_email(self, *, assume_verified: bool = False) -> str | None:
        """The email to link by: when ``email_verified`` is true, or absent and ``assume_verified``
        (the IdP issues only verified emails). An explicit false is never linked."""
        if self.email is None or self.email_verified is False:
            return None
        return self.email if self.email_verified or assume_verified else None


def build_principal(actor: str, groups: Iterable[str],
                    mappings: Iterable[TeamMapping | PlatformMapping],
                    source: str | None) -> AdminPrincipal:
    platform_role, team_roles = map_groups(groups, mappings)
    return AdminPrincipal(actor=actor, user_id=None, platform_role=platform_role,
                          team_roles=team_roles, source=source)
