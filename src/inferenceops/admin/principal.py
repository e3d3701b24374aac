"""Who is acting on the admin side, and what their roles allow. Pure data, no I/O.

Every admin authenticator (API key with the ``admin`` scope, OIDC/JWT bearer
token, trusted proxy header) produces an ``AdminPrincipal``; every admin
route decides from it alone.

A person signed in through OIDC or the auth proxy and linked to their user row
(``admin.linking``) acts as ``user:<id>``; ``via`` keeps who the IdP said they
were (``oidc:<issuer>#<sub>``, ``proxy:<user>``), and the audit log records it
with the client address (``audit_source``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from inferenceops.platform.identity import PLATFORM_ROLES, TEAM_ROLES

__all__ = ["PLATFORM_ROLES", "TEAM_ROLES", "AdminPrincipal"]


@dataclass(frozen=True)
class AdminPrincipal:
    actor: str  # what the audit log records: "user:<id>", "key:<id>", "oidc:<issuer>#<sub>", …
    user_id: str | None = None
    platform_role: str | None = None
    team_roles: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    source: str | None = None  # client address, for the audit log
    via: str | None = None  # the sign-in identity a linked person was known by: "oidc:<iss>#<sub>"

    @property
    def audit_source(self) -> str | None:
        """The audit entry's ``source``: the client address, and ``via <sign-in identity>``."""
        if self.via is None:
            return self.source
        return f"{self.source} via {self.via}" if self.source else f"via {self.via}"

    @property
    def is_platform_admin(self) -> bool:
        return self.platform_role == "platform-admin"

    @property
    def can_read_everything(self) -> bool:
        return self.platform_role in ("platform-admin", "auditor")

    def team_role(self, team_id: str) -> str | None:
        return self.team_roles.get(team_id)
