"""Authentication and RBAC for the admin API: who is calling, and what they may do where.

Authentication (``authenticated``) runs on every route — it is an app-wide
dependency; the only unauthenticated path is ``openapi.json`` (see ``app.py``).
A bearer API key with the ``admin`` scope is looked up by its keyed digest;
then each extra authenticator (OIDC, trusted proxy header, …) is asked in
turn; otherwise 401. The resulting ``AdminPrincipal`` is the only input to
authorization.

Authorization is one table, ``PLATFORM_ROLE_PERMISSIONS`` + ``TEAM_ROLE_PERMISSIONS``,
and one dependency, ``require(permission)``, written in each route's signature.
A platform role grants a permission everywhere; a team role grants it on that
team only, either for the whole team (``TEAM``) or for the caller's own keys
(``OWN``). ``require`` answers 403 when no role grants the permission at all;
the returned ``Access`` then checks each object:

* an object the caller cannot even *read* is **404**, as if it did not exist —
  a team owner probing other teams' ids learns nothing about them;
* an object the caller can read but not change is **403**.

No store writes here; the key lookup is one read transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from inferenceops.admin.principal import AdminPrincipal
from inferenceops.client_address import ClientAddress
from inferenceops.errors import AuthenticationFailed, InvalidRequest, NotFound, PermissionDenied
from inferenceops.guardrails.spec import GuardrailsSpec
from inferenceops.platform.identity import key_power
from inferenceops.platform.keys import KeyHasher
from inferenceops.store import CredentialCipher, Database, repo
from inferenceops.store.repo.admin_queries import find_api_key_by_digest, get_membership

#: A human sign-in (``admin.wiring``): the request and the client's address → the principal,
#: or None when the request carries none of its credentials.
Authenticator = Callable[[Request, str | None], Awaitable[AdminPrincipal | None]]
Extent = Literal["team", "own"]
TEAM: Extent = "team"
OWN: Extent = "own"
ADMIN_SCOPE = "admin"

PERMISSIONS = (
    "teams:read", "teams:write", "members:read", "members:write", "users:read", "users:write",
    "service_accounts:read", "service_accounts:write", "keys:read", "keys:write",
    "grants:read", "grants:write", "audit:read",
    "limits:read", "limits:write", "budgets:read", "budgets:write",
    "catalog:read", "catalog:write", "usage:read", "guardrails:read", "guardrails:write",
    "bodies:read",
)
_READS = frozenset(p for p in PERMISSIONS if p.endswith(":read"))

#: Platform roles: permissions held on every team and every object.
#: Guardrail policies apply to every team alike: platform admins change them, auditors read
#: them (as every ``:read``); no team role holds either.
#: billing reads teams, the admission rules (what may be spent), the catalog (prices) and
#: usage reports.
PLATFORM_ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = MappingProxyType({
    "platform-admin": frozenset(PERMISSIONS),
    "auditor": _READS,
    "billing": frozenset({"teams:read", "limits:read", "budgets:read", "catalog:read",
                          "usage:read"}),
})

#: Team roles: permission → extent, held on that team only. OWN: keys owned by the caller's user.
#: For limits/budgets, OWN also covers the team's own rules (team, team on a model): a member
#: sees what limits the team and their own keys, not the rules of colleagues' keys.
#: Only platform admins change admission rules: a team must not raise its own limits.
#: catalog:read held by a team role shows only the models granted to that team, and no
#: provider or deployment (``catalog_service``); only platform admins change the catalog.
#: No team role reads users: owners add members by email (``services.add_member``) instead.
#: usage:read: owners see their team's usage; members and viewers that of the keys they own,
#: as they see those keys (``usage_service``).
TEAM_ROLE_PERMISSIONS: Mapping[str, Mapping[str, Extent]] = MappingProxyType({
    "owner": MappingProxyType({
        "teams:read": TEAM, "members:read": TEAM, "members:write": TEAM,
        "service_accounts:read": TEAM, "service_accounts:write": TEAM,
        "keys:read": TEAM, "keys:write": TEAM, "grants:read": TEAM,
        "limits:read": TEAM, "budgets:read": TEAM, "catalog:read": TEAM, "usage:read": TEAM,
    }),
    "member": MappingProxyType({"teams:read": TEAM, "keys:read": OWN, "keys:write": OWN,
                                "limits:read": OWN, "budgets:read": OWN, "catalog:read": TEAM,
                                "usage:read": OWN}),
    "viewer": MappingProxyType({"teams:read": TEAM, "keys:read": OWN, "catalog:read": TEAM,
                                "usage:read": OWN}),
})


@dataclass(frozen=True)
class AdminContext:
    """What the routes share: the store, the key hasher, the extra authenticators, the
    platform currency (the only one a budget may be set in), the cipher provider API keys
    are stored with (None: this app cannot store them), who may say where a request
    came from (``client_address``: the audit log's source), and the platform file's
    ``guardrails:`` section (read-only through the API: ``guardrail_service``)."""

    db: Database
    hasher: KeyHasher
    authenticators: tuple[Authenticator, ...] = ()
    currency: str = "USD"
    cipher: CredentialCipher | None = None
    client_address: ClientAddress = ClientAddress()
    guardrails_file: GuardrailsSpec | None = None


def context(request: Request) -> AdminContext:
    return request.app.state.admin  # type: ignore[no-any-return]


Context = Annotated[AdminContext, Depends(context)]

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_bearer = HTTPBearer(auto_error=False, description="An API key with the `admin` scope")


async def authenticated(
    request: Request, ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AdminPrincipal:
    """The caller's principal: an admin-scoped API key, else an extra authenticator, else 401.

    Its ``source`` is the client's address (``ctx.client_address``: the peer, or what the
    trusted proxies in front of it forwarded). Two ``Authorization`` headers are refused:
    servers and proxies disagree about which one counts.
    """
    if len(request.headers.getlist("authorization")) > 1:
        raise InvalidRequest("The request carries more than one Authorization header; send one",
                             code="duplicate_header", param="Authorization")
    peer = request.client.host if request.client else None
    source = ctx.client_address.of(peer, request.headers.getlist("x-forwarded-for"))
    if credentials is not None and credentials.credentials.strip():
        principal = await principal_for_key(ctx.db, ctx.hasher, credentials.credentials.strip(), source)
        if principal is not None:
            return principal
    for authenticate in ctx.authenticators:
        principal = await authenticate(request, source)
        if principal is not None:
            return principal if principal.source == source else replace(principal, source=source)
    raise AuthenticationFailed("Authentication required: send `Authorization: Bearer <API key with the "
                               "admin scope>` or sign in", headers=_CHALLENGE)


Principal = Annotated[AdminPrincipal, Depends(authenticated)]


async def principal_for_key(db: Database, hasher: KeyHasher, secret: str,
                            source: str | None) -> AdminPrincipal | None:
    """The principal of a stored key; None if no key has this digest (maybe another kind of token).

    The key acts with what ``key_power`` gives it *now*: its owner's current role in
    the key's team only (a service account's key: ``member`` of its team), or, for a
    key without a team, its owner's current platform role — read afresh on every call.
    """
    async with db.read("authenticating an admin API key") as tx:
        key = await find_api_key_by_digest(tx, hasher.digest(secret))
        if key is None:
            return None
        if key.revoked_at is not None or (key.expires_at is not None
                                          and key.expires_at <= datetime.now(UTC)):
            raise AuthenticationFailed("This API key is revoked or expired", headers=_CHALLENGE)
        if ADMIN_SCOPE not in key.scopes:
            raise AuthenticationFailed("This API key does not have the admin scope", headers=_CHALLENGE)
        user_id = None
        if key.service_account_id is not None:
            await repo.get_service_account(tx, key.service_account_id)
            power = key_power(key.scopes, key.team_id, service_account=True)
        else:
            assert key.user_id is not None  # a key has exactly one owner
            user = await repo.get_user(tx, key.user_id)
            if user.disabled:
                raise AuthenticationFailed("The owner of this API key is disabled", headers=_CHALLENGE)
            user_id = user.id
            membership = (None if key.team_id is None
                          else await get_membership(tx, key.team_id, user.id))
            power = key_power(key.scopes, key.team_id, service_account=False,
                              platform_role=user.platform_role,
                              team_role=None if membership is None else membership.role)
    if power is None or ADMIN_SCOPE not in power.scopes:
        raise AuthenticationFailed(
            "This API key's owner no longer holds a role that can use it (they left its team, "
            "or their role changed)", headers=_CHALLENGE)
    roles = {} if power.team_role is None or key.team_id is None else {key.team_id: power.team_role}
    return AdminPrincipal(actor=f"key:{key.id}", user_id=user_id, platform_role=power.platform_role,
                          team_roles=MappingProxyType(roles), source=source)


def _reach(principal: AdminPrincipal, permission: str) -> tuple[bool, Mapping[str, Extent]]:
    """(held everywhere, {team_id: extent}) for one permission."""
    if permission in PLATFORM_ROLE_PERMISSIONS.get(principal.platform_role or "", frozenset()):
        return True, MappingProxyType({})
    teams = {}
    for team_id, role in principal.team_roles.items():
        extent = TEAM_ROLE_PERMISSIONS.get(role, {}).get(permission)
        if extent is not None:
            teams[team_id] = extent
    return False, MappingProxyType(teams)


@dataclass(frozen=True)
class Access:
    """A permission the caller holds somewhere; its methods check it against one object."""

    principal: AdminPrincipal
    permission: str
    everywhere: bool
    teams: Mapping[str, Extent]  # where it holds, when not everywhere

    @classmethod
    def of(cls, principal: AdminPrincipal, permission: str) -> Access:
        everywhere, teams = _reach(principal, permission)
        return cls(principal, permission, everywhere, teams)

    def whole_teams(self) -> frozenset[str]:
        """Teams where the permission covers every object (not only the caller's own keys)."""
        return frozenset(t for t, extent in self.teams.items() if extent == TEAM)

    def allows(self, team_id: str | None, *, owner_user_id: str | None = None,
               whole_team: bool = True) -> bool:
        if self.everywhere:
            return True
        extent = self.teams.get(team_id) if team_id is not None else None
        if extent == TEAM:
            return True
        return (extent == OWN and not whole_team and owner_user_id is not None
                and owner_user_id == self.principal.user_id)

    def check(self, team_id: str | None, what: str, *, owner_user_id: str | None = None,
              whole_team: bool = True, seen_with: str | None = None) -> None:
        """Allow acting on an object of ``team_id`` (a key: pass its owner, ``whole_team=False``).

        Refused: 403 if the caller may read the object (``seen_with``, by default
        the resource's ``:read`` permission), else 404. Creating something in a
        team passes ``seen_with="teams:read"``: the team is what the caller sees.
        """
        if self.allows(team_id, owner_user_id=owner_user_id, whole_team=whole_team):
            return
        read_permission = seen_with or self.permission.split(":")[0] + ":read"
        read = Access.of(self.principal, read_permission)
        if read_permission != self.permission and read.allows(
                team_id, owner_user_id=owner_user_id, whole_team=whole_team or seen_with is not None):
            raise PermissionDenied(f"Your roles do not allow {self.permission} on {what}")
        raise NotFound(f"No {what}")


def require(permission: str) -> Callable[..., Awaitable[Access]]:
    """Dependency: the caller's ``Access`` for ``permission``, or 403 if no role of theirs grants it."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    async def dependency(principal: Principal) -> Access:
        access = Access.of(principal, permission)
        if not access.everywhere and not access.teams:
            raise PermissionDenied(f"Your roles do not allow {permission}")
        return access

    dependency.__name__ = f"require_{permission.replace(':', '_')}"
    return dependency


def team_scope(access: Access) -> Sequence[str] | None:
    """The teams a listing is limited to (None: every team)."""
    return None if access.everywhere else sorted(access.teams)
