"""The control-plane store: SQLAlchemy tables, Alembic migrations, repositories.

Owns everything that touches the database; it is the only package that
imports SQLAlchemy, asyncpg or Alembic. Used by bootstrap, the admin API, the
background writers and the snapshot builder — never by the data plane
(``gateway`` reads an in-memory snapshot built from ``load_identity``).

    db.py          Database (engine + sessions per URL), backend_of
    migrate.py     upgrade / current, under a cross-process migration lock (Alembic is
                   imported on first use of these names: a serving worker never migrates)
    tables.py      the schema (declarative, typed): Base, column types; tables_*.py its tables by area
    records.py     the plain records that leave the store
    repo/          async repositories (teams, users, keys, grants, admission rules, catalog, identity)
    credentials.py CredentialCipher: provider API keys encrypted at rest (AES-256-GCM)
    errors.py      StoreError tree; the one translator of library exceptions
    ids.py         prefixed random ids
    migrations/    Alembic environment and revisions (packaged)

Usage::

    db = Database(settings.resolved_database_url)
    await upgrade(settings.resolved_database_url)
    async with db.transaction() as tx:
        team = await repo.create_team(tx, "search")
    identity = await repo.load_identity(db)
"""

from typing import TYPE_CHECKING, Any

from inferenceops.store import repo
from inferenceops.store.credentials import CredentialCipher, cipher_from_environment
from inferenceops.store.db import Backend, Database, backend_of
from inferenceops.store.errors import (
    Conflict,
    CredentialsError,
    Invalid,
    InvalidDatabaseURL,
    NotFound,
    SchemaOutdated,
    StoreError,
    StoreUnavailable,
    WrongCredentialsKey,
)
from inferenceops.store.records import (
    ActiveKey,
    ApiKeyRecord,
    BudgetRecord,
    CatalogData,
    DeploymentRecord,
    GrantRecord,
    IdentityData,
    LimitRecord,
    MembershipRecord,
    ModelRecord,
    Page,
    ProviderRecord,
    ServiceAccountRecord,
    TeamRecord,
    UserRecord,
)

__all__ = [
    "ActiveKey", "ApiKeyRecord", "Backend", "BudgetRecord", "CatalogData", "Conflict",
    "CredentialCipher", "CredentialsError", "Database", "DeploymentRecord", "GrantRecord",
    "IdentityData", "Invalid", "InvalidDatabaseURL", "LimitRecord", "MembershipRecord",
    "ModelRecord", "NotFound", "Page", "ProviderRecord", "SchemaOutdated",
    "ServiceAccountRecord", "StoreError", "StoreUnavailable", "TeamRecord", "UserRecord",
    "WrongCredentialsKey", "backend_of", "cipher_from_environment", "current", "head", "repo",
    "upgrade",
]

if TYPE_CHECKING:
    from inferenceops.store.migrate import current, head, upgrade

_MIGRATE = frozenset({"current", "head", "upgrade"})


def __getattr__(name: str) -> Any:
    """``current``, ``head`` and ``upgrade`` load Alembic (and Mako) when first asked for.

    Only the processes that migrate need them (``serve`` before it starts the server,
    ``worker``, ``db upgrade``); a serving worker reads the store but never migrates, and
    keeps ~12 MB of modules out of its memory (``tests/unit/test_idle_imports.py``).
    """
    if name in _MIGRATE:
        from inferenceops.store import migrate

        return getattr(migrate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
