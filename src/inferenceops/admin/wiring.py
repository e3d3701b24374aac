"""Assembling the admin application for a serving process.

The credentials cipher (provider API keys at rest) is built here from the environment and
the platform secret (``store.credentials.cipher_from_environment``) unless one is passed in.
Human authenticators (OIDC bearer tokens, trusted proxy headers) are adapted
to the admin API's ``Authenticator`` shape here; their team mappings may name
teams by name, which are resolved to ids against the store per request.
"""

from __future__ import annotations

import os
from dataclasses import replace
from types import MappingProxyType

from starlette.requests import Request

from inferenceops.admin.api import build_admin_app
from inferenceops.admin.api.deps import Authenticator
from inferenceops.admin.oidc import OIDCAuthenticator, looks_like_jwt
from inferenceops.admin.principal import AdminPrincipal
from inferenceops.admin.proxy_auth import ProxyHeaderAuthenticator
from inferenceops.app import platform_secret
from inferenceops.platform import KeyHasher
from inferenceops.settings import Settings
from inferenceops.store import CredentialCipher, Database, NotFound, cipher_from_environment, repo


class AdminDatabase:
    """Closes the admin application's database pool with the process (a state feed)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(self, state: object) -> None:
        return None

    async def stop(self) -> None:
        await self.db.close()


def build_admin(settings: Settings, hasher: KeyHasher, currency: str = "USD",
                cipher: CredentialCipher | None = None) -> tuple[object, AdminDatabase]:
    """The admin app and its database feed; ``currency`` is the platform's (budgets must use it).

    ``cipher`` encrypts provider API keys; None: ``INFERENCEOPS_CREDENTIALS_KEY``, else a key
    derived from the platform secret (the same on every replica that shares it).
    """
    if cipher is None:
        cipher = cipher_from_environment(os.environ, platform_secret(settings))
    db = Database(settings.resolved_database_url)
    app = build_admin_app(db, hasher, extra_authenticators=human_authenticators(settings, db),
                          currency=currency, cipher=cipher)
    return app, AdminDatabase(db)


def human_authenticators(settings: Settings, db: Database) -> list[Authenticator]:
    found: list[Authenticator] = []
    if settings.oidc is not None:
        oidc = OIDCAuthenticator(settings.oidc)

        async def by_token(request: Request) -> AdminPrincipal | None:
            header = request.headers.get("authorization")
            token = header[7:].strip() if header and header[:7].lower() == "bearer " else ""
            if not looks_like_jwt(token):
                return None
            source = request.client.host if request.client else None
            return await _resolve_teams(db, await oidc.authenticate(header, source=source))

        found.append(by_token)
    if settings.proxy_auth is not None:
        proxy = ProxyHeaderAuthenticator(settings.proxy_auth)
        user_header = settings.proxy_auth.user_header.lower()

        async def by_proxy(request: Request) -> AdminPrincipal | None:
            if user_header not in request.headers:
                return None
            source = request.client.host if request.client else None
            principal = proxy.authenticate(dict(request.headers), source=source)
            return await _resolve_teams(db, principal)

        found.append(by_proxy)
    return found


async def _resolve_teams(db: Database, principal: AdminPrincipal) -> AdminPrincipal:
    """Team mappings may name teams; the RBAC checks work on ids. Unknown names are dropped."""
    if not principal.team_roles:
        return principal
    roles: dict[str, str] = {}
    async with db.read("resolving mapped teams") as tx:
        for team, role in principal.team_roles.items():
            try:
                record = await repo.get_team(tx, team)
            except NotFound:
                try:
                    record = await repo.get_team_by_name(tx, team)
                except NotFound:
                    continue
            roles[record.id] = role
    return replace(principal, team_roles=MappingProxyType(roles))
