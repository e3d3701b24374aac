"""Human authentication for the admin API: the group mapping and the result type.

Two authenticators turn a person into an ``AdminPrincipal``:

- ``inferenceops.admin.oidc.OIDCAuthenticator`` – a bearer JWT from an OIDC
  identity provider, verified against the provider's JWKS;
- ``inferenceops.admin.proxy_auth.ProxyHeaderAuthenticator`` – an identity
  header set by a trusted authenticating reverse proxy (oauth2-proxy, an
  ingress with external auth, …).

This module holds what both share, and nothing that does I/O: their settings
(``OIDCConfig``, ``ProxyAuthConfig``, kept below in ``inferenceops.signin_settings``), the pure
``map_groups`` policy that turns IdP groups into roles, and ``HumanIdentity``,
the principal plus the identity claims the admin layer needs to link a person
to a user row (``inferenceops.admin.linking`` does that, against the store).

Team mappings name a team by id *or* name, exactly as the operator wrote it;
``AdminPrincipal.team_roles`` is keyed by that value. Resolving names to team
ids is the admin layer's job (it owns the store); nothing here looks teams up.
Group names are matched exactly (case-sensitive), as IdPs emit them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from inferenceops.admin.principal import PLATFORM_ROLES, TEAM_ROLES, AdminPrincipal
from inferenceops.signin_settings import (
    PROXY_ISSUER,
    PlatformMapping,
    TeamMapping,
)


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
    e.g. the email, else ``sub``; the proxy's user header). ``(link_issuer, subject)``
    is what a sign-in link names (``admin.linking``); the first link may be made by
    ``verified_email`` only: an IdP that lets people type any address would otherwise
    let them take over the user that has it.
    """

    principal: AdminPrincipal
    subject: str  # `sub` (OIDC) or the user header (proxy): stable within its issuer
    user: str
    email: str | None = None
    email_verified: bool | None = None  # True for the proxy: it is trusted to have checked
    issuer: str | None = None  # None for proxy-header identities
    groups: tuple[str, ...] = ()
    name: str | None = None  # the `name` claim, a display name

    @property
    def link_issuer(self) -> str:
        """The issuer a sign-in link records: the token's, or ``proxy`` for the auth proxy."""
        return self.issuer if self.issuer is not None else PROXY_ISSUER

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
