"""Linking a signed-in person to their user row: the principal an OIDC token or proxy header acts as.

``link_identity`` turns a ``HumanIdentity`` that ``oidc`` or ``proxy_auth`` has
already verified into the ``AdminPrincipal`` the admin API authorizes with. The
rules (``docs/security.md``, "Signing in"):

1. An identity is ``(issuer, subject)``: the token's ``iss`` and ``sub``, or
   (``proxy``, the proxy's user header). Once linked to a user (a row of
   ``sign_in_links``), it is found by that pair alone on every request; its email
   no longer matters, so an address changed or reused at the IdP moves nothing.
2. An identity linked to nobody is linked on its first sign-in, and only
   - by its verified email (``HumanIdentity.verified_email``) to the user with that
     address, when that user is enabled, holds no platform role, and has no other
     identity of the same issuer — a platform-role account (the bootstrap admin
     among them) or one already linked is never taken over by an email claim; nor is
     an address under ``.invalid``, which no IdP can have verified;
   - or, with ``provision_users``, to a new user made for its verified email (no
     roles of its own; audited as ``user.provision``);
   - or by a platform admin (``POST /users/{id}/sign-in-links``, ``inferenceops
     users link``), the only way for the rest.
   Every automatic link is audited as ``user.link``. An identity that cannot be
   linked is refused with 403: group-mapped roles apply only to a linked identity.
3. The linked user is read on every request: a disabled user is refused (403)
   whatever the token or the groups say. Disabling a user shuts every way in.
4. The principal is the user's (``linked_principal``): actor ``user:<id>`` (``via``
   keeps the IdP identity; the audit log records both), the stronger of the
   group-mapped and the stored platform role, and per team the stronger of the
   group-mapped role and the stored membership.

Why the stronger role and not the stored one: a group mapping and a stored role
are both grants an operator made, and neither is a denial. To take a role away,
remove the grant that gives it; to lock a person out, disable their user.
"""

from __future__ import annotations

import logging
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
from inferenceops.store.repo import sign_in_links

log = logging.getLogger("inferenceops.admin")

MAX_DISPLAY_NAME = 200  # what the admin API accepts for a user's display name
UNVERIFIABLE_DOMAIN = ".invalid"  # RFC 2606: no mailbox there, so no IdP verified it
_LINK_ATTEMPTS = 3  # concurrent first sign-ins of one person: the losers find the winner's link


class NotLinked(PermissionDenied):
    code = "identity_not_linked"


async def link_identity(db: Database, identity: HumanIdentity,
                        config: OIDCConfig | ProxyAuthConfig) -> AdminPrincipal:
    """The principal ``identity`` acts as (see the module docstring); 403 if it has none."""
    async with db.read("signing in") as tx:
        principal = await _resolve_teams(tx, identity.principal)
        user = await _linked_user(tx, identity)
    if user is None:
        user = await _link(db, identity, config, principal)
    if user.disabled:
        raise PermissionDenied("Your user account is disabled; ask a platform admin to enable it")
    async with db.read("signing in") as tx:
        memberships = await repo.list_memberships(tx, user_id=user.id)
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


async def _linked_user(tx: AsyncSession, identity: HumanIdentity) -> UserRecord | None:
    link = await sign_in_links.find_link(tx, identity.link_issuer, identity.subject)
    return None if link is None else await repo.get_user(tx, link.user_id)


async def _link(db: Database, identity: HumanIdentity, config: OIDCConfig | ProxyAuthConfig,
                principal: AdminPrincipal) -> UserRecord:
    """Link a new identity by its verified email or by provisioning (rule 2), or refuse it."""
    assume = isinstance(config, OIDCConfig) and config.assume_email_verified
    email = identity.verified_email(assume_verified=assume)
    if email is None:
        raise _not_linked(identity, "your identity provider vouched for no email address")
    for attempt in range(_LINK_ATTEMPTS):
        try:
            async with db.transaction("linking a signed-in identity") as tx:
                user = await _linked_user(tx, identity)  # another request may have just linked it
                if user is not None:
                    return user
                user = await _user_by_email(tx, email)
                if user is None and not config.provision_users:
                    raise _not_linked(identity, "no user can be linked by your email address",
                                      why=f"no user has the address {email!r} and "
                                          "provision_users is off")
                method = "email"
                if user is None:
                    user, method = await _provision(tx, identity, email, principal), "provisioned"
                elif await _check_linkable_by_email(tx, identity, user):
                    return user  # a concurrent first sign-in linked it after our first read
                link = await sign_in_links.create_link(
                    tx, identity.link_issuer, identity.subject, user.id, method=method,
                    linked_by=principal.actor)
                await audit(tx, linked_principal(principal, user, ()), "user.link", "user", user.id,
                            after=s.SignInLinkOut.of(link))
                return user
        except store_errors.Conflict:  # a concurrent first sign-in made the user or the link
            if attempt == _LINK_ATTEMPTS - 1:
                raise
        except store_errors.Invalid:  # a claim the store does not take (not an address, too long)
            raise _not_linked(identity, "your email address or subject cannot be stored") from None
    raise AssertionError("unreachable")  # the loop returns or raises


async def _check_linkable_by_email(tx: AsyncSession, identity: HumanIdentity,
                                   user: UserRecord) -> bool:
    """Refuse what rule 2 forbids; True if ``identity`` itself is already ``user``'s link.

    Each statement of a READ COMMITTED transaction sees what was committed before
    it began, so a concurrent first sign-in of the same person can commit its link
    between our look-up of the link and this one: that link is ours, not another.
    """
    if user.disabled:
        raise PermissionDenied("Your user account is disabled; ask a platform admin to enable it")
    refused = ""
    if user.platform_role is not None:
        refused = f"user {user.id} holds the platform role {user.platform_role}"
    elif user.email.endswith(UNVERIFIABLE_DOMAIN):
        refused = f"user {user.id}'s address is under {UNVERIFIABLE_DOMAIN}"
    else:
        links = await sign_in_links.list_links(tx, user_id=user.id, issuer=identity.link_issuer)
        if any(link.subject == identity.subject for link in links):
            return True
        if links:
            refused = f"user {user.id} is linked to another identity of {identity.link_issuer!r}"
    if refused:
        raise _not_linked(identity, "the user with your email address is linked only by a "
                                    "platform admin", why=refused)
    return False


def _not_linked(identity: HumanIdentity, reason: str, *, why: str | None = None) -> NotLinked:
    """The refusal: what the person may know, and (logged) what the operator needs."""
    log.info("sign-in refused: %s (issuer %r, subject %r) is linked to no user: %s",
             identity.principal.actor, identity.link_issuer, identity.subject, why or reason)
    return NotLinked(
        f"Your sign-in is not linked to a user ({reason}). Ask a platform admin to link it: "
        f"`inferenceops users link <user> --issuer '{identity.link_issuer}' "
        f"--subject '{identity.subject}'`")


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


async def _provision(tx: AsyncSession, identity: HumanIdentity, email: str,
                     principal: AdminPrincipal) -> UserRecord:
    """A new user for ``email``, no roles of its own, audited by that user."""
    name = (identity.name or "")[:MAX_DISPLAY_NAME]
    user = await repo.create_user(tx, email, display_name=name)
    await audit(tx, linked_principal(principal, user, ()), "user.provision", "user", user.id,
                after=s.UserOut.of(user))
    return user
