"""The admin API application factory: ``build_admin_app``.

The app serves full paths under ``/admin/api/v1`` itself (no ``root_path``
tricks), so the platform mounts it at that prefix and ``/admin/api/v1/openapi.json``
works as is. Assembled here, in order:

* authentication as an app-wide dependency — every route requires it; the
  allow-list is ``PUBLIC_PATHS`` (only the OpenAPI document; the docs UI is off);
* then, app-wide too, ``_input.reject_nul``: no NUL character in any parameter or body
  reaches the store (PostgreSQL cannot hold one);
* one exception handler (``errors.error_response``) for every failure, and an OpenAPI
  document that says so (``_openapi``: every error response is ``Error``);
* one router per resource (``routes_*.py``), each route naming its permission.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Depends, FastAPI

from inferenceops.admin.api import (
    routes_adapters,
    routes_apply,
    routes_audit,
    routes_budgets,
    routes_chargeback,
    routes_deployments,
    routes_grants,
    routes_guardrails,
    routes_invitations,
    routes_keys,
    routes_limits,
    routes_models,
    routes_providers,
    routes_retention,
    routes_service_accounts,
    routes_teams,
    routes_usage,
    routes_users,
)
from inferenceops.admin.api._input import reject_nul
from inferenceops.admin.api._openapi import document_errors
from inferenceops.admin.api.deps import AdminContext, Authenticator, authenticated
from inferenceops.admin.api.errors import HANDLED, error_response
from inferenceops.client_address import ClientAddress
from inferenceops.guardrails.spec import GuardrailsSpec
from inferenceops.platform.keys import KeyHasher
from inferenceops.platform.policy import CURRENCIES
from inferenceops.store import CredentialCipher, Database

PREFIX = "/admin/api/v1"
OPENAPI_PATH = f"{PREFIX}/openapi.json"
#: Paths served without authentication. Nothing else.
PUBLIC_PATHS = frozenset({OPENAPI_PATH})
ROUTERS = (routes_audit.router, routes_teams.router, routes_users.router,
           routes_service_accounts.router, routes_keys.router, routes_grants.router,
           routes_limits.router, routes_budgets.router, routes_providers.router,
           routes_deployments.router, routes_models.router, routes_apply.router,
           routes_invitations.router, routes_usage.router, routes_chargeback.router,
           routes_guardrails.router, routes_retention.router, routes_adapters.router)


class AdminApp(FastAPI):
    """FastAPI, with an OpenAPI document that describes this API's errors (``_openapi``)."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = document_errors(super().openapi())
        return self.openapi_schema


def build_admin_app(db: Database, hasher: KeyHasher, *,
                    extra_authenticators: Iterable[Authenticator] = (),
                    currency: str = "USD", cipher: CredentialCipher | None = None,
                    trusted_proxies: Iterable[str] = (),
                    guardrails_file: GuardrailsSpec | None = None) -> FastAPI:
    """The admin REST API over ``db``; ``extra_authenticators`` are tried after API keys, in order.

    ``currency`` is the platform's (ISO 4217): budgets in any other are refused. ``cipher``
    encrypts provider API keys (``admin.wiring`` builds it from the environment); without
    one, storing a key answers 503. ``trusted_proxies`` (CIDRs) may say, in X-Forwarded-For,
    which client they forward (the audit log's source). ``guardrails_file``: the platform
    file's ``guardrails:`` section, listed by the API and read-only there.
    """
    if currency not in CURRENCIES:
        raise ValueError(f"unknown currency {currency!r}; use an ISO 4217 code such as USD")
    app = AdminApp(
        title="InferenceOps admin API", version="1", openapi_url=OPENAPI_PATH,
        docs_url=None, redoc_url=None,
        # Authentication on every route, then the input check, in this order (so a caller
        # without credentials learns nothing); the OpenAPI route is added by FastAPI outside.
        dependencies=[Depends(authenticated), Depends(reject_nul)],
    )
    app.state.admin = AdminContext(db, hasher, tuple(extra_authenticators), currency, cipher,
                                   ClientAddress(trusted_proxies), guardrails_file)
    for exc_class in HANDLED:
        app.add_exception_handler(exc_class, error_response)
    for router in ROUTERS:
        app.include_router(router, prefix=PREFIX)
    return app
