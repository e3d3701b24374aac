"""Trusted-proxy header authentication for the admin API: an identity header becomes an ``AdminPrincipal``.

An authenticating reverse proxy (oauth2-proxy, an ingress with external auth)
logs the person in and forwards the request with their identity in a header.
Anyone can send such a header, so it counts only when the TCP peer
(``source``) is one of ``trusted_proxies``; the proxy must overwrite the
headers on every request. ``source`` must be the socket peer address, never
an ``X-Forwarded-For`` value (which the client controls).

Pure: a function of (config, headers, source). No I/O, no database.
"""

from __future__ import annotations

from collections.abc import Mapping

from inferenceops.admin.human_auth import HumanIdentity, build_principal
from inferenceops.admin.principal import AdminPrincipal
from inferenceops.client_address import ClientAddress
from inferenceops.errors import AuthenticationFailed
from inferenceops.signin_settings import ProxyAuthConfig

MAX_USER_CHARS = 256
MAX_GROUPS_CHARS = 16 * 1024


class ProxyHeaderAuthenticator:
    """Turns trusted identity headers into principals; stateless, safe to share."""

    def __init__(self, config: ProxyAuthConfig) -> None:
        self.config = config
        self._proxies = ClientAddress(config.trusted_proxies)

    def authenticate(self, headers: Mapping[str, str], *, source: str | None) -> AdminPrincipal:
        return self.identify(headers, peer=source).principal

    def identify(self, headers: Mapping[str, str], *, peer: str | None,
                 source: str | None = None) -> HumanIdentity:
        """The identity the headers name, if ``peer`` (the TCP peer) is a trusted proxy;
        ``source``: the client address the principal records (default: ``peer``)."""
        if not self.is_trusted(peer):
            raise AuthenticationFailed("identity headers are accepted only from trusted proxies",
                                       code="untrusted_proxy")
        lowered = {name.lower(): value for name, value in headers.items()}
        user = lowered.get(self.config.user_header, "").strip()
        if not user:
            raise AuthenticationFailed(f"the proxy sent no {self.config.user_header} header",
                                       code="missing_identity")
        if len(user) > MAX_USER_CHARS or not user.isprintable():
            raise AuthenticationFailed(f"the {self.config.user_header} header is not a user name",
                                       code="missing_identity")
        groups = self._groups(lowered)
        principal = build_principal(f"proxy:{user}", groups, self.config.group_mappings,
                                    peer if source is None else source)
        # The proxy is trusted to have checked who this is, so an email it names is verified.
        email = user if "@" in user else None
        return HumanIdentity(principal=principal, subject=user, user=user, email=email,
                             email_verified=True if email else None, groups=groups)

    def is_trusted(self, source: str | None) -> bool:
        """Whether ``source`` (an IPv4/IPv6 address, optionally [bracketed]) is a trusted proxy."""
        return self._proxies.is_trusted(source)

    def _groups(self, headers: Mapping[str, str]) -> tuple[str, ...]:
        if self.config.groups_header is None:
            return ()
        raw = headers.get(self.config.groups_header, "")
        if len(raw) > MAX_GROUPS_CHARS:
            raise AuthenticationFailed(f"the {self.config.groups_header} header is too large",
                                       code="missing_identity")
        return tuple(group for group in (part.strip() for part in raw.split(",")) if group)
