"""Assembling the admin application for a serving process.

The credentials cipher (provider API keys at rest) is built here from the environment and
the platform secret (``store.credentials.cipher_from_environment``) unless one is passed in.
Human authenticators (OIDC bearer tokens, trusted proxy headers) are adapted
to the admin API's ``Authenticator`` shape here; ``admin.linking`` then turns
the verified identity into its principal against the store, per request (team
names to ids, the person's user row by verified email). The platform file's
``guardrails:`` section is read here too, with the data plane's own parser
(``config.spec.load_platform``): the API lists its policies, read-only.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request

from inferenceops.admin.api import build_admin_app
from inferenceops.admin.api.deps import Authenticator
from inferenceops.admin.linking import link_identity
from inferenceops.admin.oidc import OIDCAuthenticator, looks_like_jwt
from inferenceops.admin.principal import AdminPrincipal
from inferenceops.admin.proxy_auth import ProxyHeaderAuthenticator
from inferenceops.config.spec import ConfigError, load_platform
from inferenceops.errors import InvalidRequest
from inferenceops.guardrails.spec import GuardrailsSpec
from inferenceops.platform import KeyHasher
from inferenceops.platform_secret import platform_secret
from inferenceops.settings import Settings
from inferenceops.store import CredentialCipher, Database, cipher_from_environment

log = logging.getLogger("inferenceops.admin")


class AdminDatabase:
    """Closes the admin application's database pool with the process (a supervised service)."""

    name = "admin-database"

    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(self) -> None:
        return None

    async def run(self) -> None:
        return None  # nothing to do in the background: the pool opens on demand

    async def stop(self) -> None:
        await self.db.close()


def build_admin(settings: Settings, hasher: KeyHasher, currency: str = "USD",
                cipher: CredentialCipher | None = None,
                fleet: Any = None) -> tuple[FastAPI, AdminDatabase]:
    """The admin app and its database feed; ``currency`` is the platform's (budgets must use it).

    ``cipher`` encrypts provider API keys; None: ``INFERENCEOPS_CREDENTIALS_KEY``, else a key
    derived from the platform secret (the same on every replica that shares it). ``fleet``:
    this process's replica health (``catalog_service.FleetView``), for the health routes.
    """
    if cipher is None:
        cipher = cipher_from_environment(os.environ, platform_secret(settings))
    db = Database(settings.resolved_database_url)
    app = build_admin_app(db, hasher, extra_authenticators=human_authenticators(settings, db),
                          currency=currency, cipher=cipher, trusted_proxies=settings.trusted_proxies,
                          guardrails_file=file_guardrails(settings))
    app.state.fleet = fleet
    return app, AdminDatabase(db)


def file_guardrails(settings: Settings) -> GuardrailsSpec | None:
    """The platform file's ``guardrails:`` section (None: no file, or no policies in it).

    The serving process validated the file at start; should it have changed on disk since
    and no longer parse, the API lists no file policies (logged) rather than fail.
    """
    if settings.config is None:
        return None
    try:
        platform = load_platform(settings.config, loopback_base_url=settings.loopback_base_url)
    except ConfigError as exc:
        log.error("the admin API lists no guardrail policies of the platform file: %s", exc)
        return None
    return platform.policy.guardrails


def human_authenticators(settings: Settings, db: Database, *,
                         oidc: OIDCAuthenticator | None = None) -> list[Authenticator]:
    """Authenticators for the configured human sign-ins: OIDC tokens, then proxy headers.

    ``oidc`` replaces the one built from ``settings.oidc`` (tests inject a clock or fetcher).
    """
    found: list[Authenticator] = []
    oidc_config = settings.oidc
    if oidc_config is not None:
        verifier = oidc if oidc is not None else OIDCAuthenticator(oidc_config)

        async def by_token(request: Request, source: str | None) -> AdminPrincipal | None:
            header = request.headers.get("authorization")
            token = header[7:].strip() if header and header[:7].lower() == "bearer " else ""
            if not looks_like_jwt(token):
                return None
            identity = await verifier.identify(header, source=source)
            return await link_identity(db, identity, oidc_config)

        found.append(by_token)
    proxy_config = settings.proxy_auth
    if proxy_config is not None:
        proxy = ProxyHeaderAuthenticator(proxy_config)
        user_header = proxy_config.user_header.lower()
        identity_headers = tuple(name for name in (user_header, proxy_config.groups_header)
                                 if name is not None)

        async def by_proxy(request: Request, source: str | None) -> AdminPrincipal | None:
            if user_header not in request.headers:
                return None
            for name in identity_headers:
                if len(request.headers.getlist(name)) > 1:
                    # Servers and proxies disagree about which of two counts: accept neither.
                    raise InvalidRequest(f"The request carries more than one {name} header",
                                         code="duplicate_header", param=name)
            # Trust is the TCP peer's: never an address a header names.
            peer = request.client.host if request.client else None
            identity = proxy.identify(dict(request.headers), peer=peer, source=source)
            return await link_identity(db, identity, proxy_config)

        found.append(by_proxy)
    return found
