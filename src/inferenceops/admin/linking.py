"""Linking a signed-in person to their user row: the principal an OIDC token or proxy header acts as.

``link_identity`` turns a ``HumanIdentity`` that ``oidc`` or ``proxy_auth`` has
already verified into the ``AdminPrincipal`` the admin API authorizes with. It
reads the store once (and writes once, to provision a user):

1. Team mappings may name teams by name; they become team ids (unknown names are dropped).
2. The identity's verified email (``HumanIdentity.verified_email``: OIDC's
   ``email_verified`` true, or absent with ``assume_email_verified``; the proxy's
   email always) is looked up among the users, ignoring case. No verified email, or
   no such user: the principal stays the IdP's — actor ``oidc:<issuer>#<sub>`` or
   ``proxy:<user>``, the group-mapped roles, no user id.
3. The user is disabled: 403, whatever the token or the groups say. Disabling a
   user must shut every way in.
4. Otherwise the principal is the user's (``linked_principal``): actor ``user:<id>``
   (``via`` keeps the IdP identity, and the audit log records both), the stronger of
   the group-mapped and the stored platform role, and for each team the stronger of
   the group-mapped role and the stored membership.
5. No such user and ``provision_users``: a user row is made — no platform role, no
   memberships, the token's ``name`` as display name — audited as ``user.provision``
   by that new user, and linked as in 4.

Why the stronger role and not the stored one: a group mapping and a stored role
are both grants an operator made, and neither is a denial. Linking must not take
away what the IdP's groups give (a platform admin whose row exists only so they
can own keys would otherwise lose admin on sign-in), nor what the store gives.
To take a role away, remove the grant that gives it; to lock a person out,
disable their user (3).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from types import MappingProxyType

from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.admin.api import schemas as s
from inferenceops.admin.api.services import audit
from inferenceops.admin.human_auth import HumanIdentity, stronger_role
from inferenceops.admin.principal import PLATFORM_ROLES, TEAM_ROLES, AdminPrincipal
from inferenceops.errors import PermissionDenied
from inferenceops.signin_settings import OIDCConfig, ProxyAuthConfig
from inferenceops.store import Database, repo
from inferenceops.store import errors as store_errors
from inferenceops.store.records import MembershipRecord, UserRecord

MAX_DISPLAY_NAME = 200  # what the admin API accepts for a user's display name


async def link_identity(db: Database, identity: HumanIdentity,
                        config: OIDCConfig | ProxyAuthConfig) -> AdminPrincipal:
    """The principal ``identity`` acts as (see the module docstring); 403 for a disabled user."""
    assume = isinstance(config, OIDCConfig) and config.assume_email_verified
    email = identity.verified_email(assume_verified=assume)
    memberships: tuple[MembershipRecord, ...] = ()
    async with db.read("signing in") as tx:
        principal = await _resolve_teams(tx, identity.principal)
        if email is None:
            return principal
        user = await _user_by_email(tx, email)
        if user is not None:
            memberships = await repo.list_memberships(tx, user_id=user.id)
    if user is None and config.provision_users:
        user = await _provision(db, identity, email, principal)
    if user is None:
        return principal
    if user.disabled:
        raise PermissionDenied("Your user account is disabled; ask a platform admin to enable it")
    return linked_principal(principal, user, memberships)


def linked_principal(principal: AdminPrincipal, user: UserRecord,
                     memberships: Iterable[MembershipRecord]) -> AdminPrincipal:
    """``principal`` (team roles by id) acting as ``user``: for each role, the stronger grant."""
    teams = dict(principal.team_roles)
    for membership in memberships:
        teams[membership.team_id] = stronger_role(TEAM_ROLES, teams.get(membership.team_id),
                                                  membership.role)
    platform_role = principal.platform_role
    if user.platform_role is not None:
        platform_role = stronger_role(PLATFORM_ROLES, platform_role, user.platform_role)
    return replace(principal, actor=f"user:{user.id}", user_id=user.id, platform_role=platform_role,
                   team_roles=MappingProxyType(teams), via=principal.actor)


async def _resolve_teams(tx: AsyncSession, principal: AdminPrincipal) -> AdminPrincipal:
    """Team mappings may name teams; the RBAC checks work on ids. Unknown names are dropped."""
    if not principal.team_roles:
        return principal
    roles: dict[str, str] = {}
    for team, role in principal.team_roles.items():
        try:
            record = await repo.get_team(tx, team)
        except store_errors.NotFound:
            try:
                record = await repo.get_team_by_name(tx, team)
            except store_errors.NotFound:
                continue
        roles[record.id] = stronger_role(TEAM_ROLES, roles.get(record.id), role)
    return replace(principal, team_roles=MappingProxyType(roles))


async def _user_by_email(tx: AsyncSession, email: str) -> UserRecord | None:
    try:
        return await repo.get_user_by_email(tx, email)
    except store_errors.NotFound:
        return None


async def _provision(db: Database, identity: HumanIdentity, email: str,
                     principal: AdminPrincipal) -> UserRecord | None:
    """A new user for ``email``; the one a concurrent first sign-in made; None if not an email."""
    name = (identity.name or "")[:MAX_DISPLAY_NAME]
    try:
        async with db.transaction("provisioning a signed-in user") as tx:
            user = await repo.create_user(tx, email, display_name=name)
            await audit(tx, linked_principal(principal, user, ()), "user.provision", "user", user.id,
                        after=s.UserOut.of(user))
    except store_errors.Conflict:  # another replica or request signed the same person in first
        async with db.read("signing in") as tx:
            return await _user_by_email(tx, email)
    except store_errors.Invalid:  # an email claim the store does not take as an address
        return None
    return user
