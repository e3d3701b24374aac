"""Providers in the catalog: create, read, list, update, delete, and their API keys.

A provider is ``config.spec.deployments.ProviderSpec`` (validated as ``catalog`` validates
deployments and models, under the same lock and row steps: ``catalog_rows``). Its API key is
stored only encrypted (``store.credentials``, bound to the provider's id): ``set_provider_key``
and ``clear_provider_key`` change it, records say ``has_api_key``, and the plaintext leaves only
through ``catalog.load_catalog(session, cipher)``. A provider cannot be deleted while a
deployment names it (``Conflict`` naming them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.config.spec.deployments import ProviderSpec
from inferenceops.store import ids
from inferenceops.store.credentials import CredentialCipher
from inferenceops.store.errors import Conflict, CredentialsError, Invalid, NotFound, translating
from inferenceops.store.records import Page, ProviderRecord
from inferenceops.store.repo._common import bump_revision, page
from inferenceops.store.repo.catalog_rows import (
    UNCHANGED,
    ManagedBy,
    _apply,
    _check_name_free,
    _delete,
    _insert,
    _merged,
    _quoted,
    _row,
    lock_catalog,
)
from inferenceops.store.repo.catalog_specs import provider_columns, provider_record, provider_spec, validated
from inferenceops.store.tables_catalog import Deployment, Provider

MAX_API_KEY_CHARS = 8192


def _checked_secret(secret: str) -> str:
    if not isinstance(secret, str) or not secret.strip():
        raise Invalid("an API key must not be empty", field="api_key")
    secret = secret.strip()
    if len(secret) > MAX_API_KEY_CHARS:
        raise Invalid(f"an API key is at most {MAX_API_KEY_CHARS} characters", field="api_key")
    if any(c.isspace() or not c.isprintable() for c in secret):
        raise Invalid("an API key is one line of printable characters without spaces",
                      field="api_key")
    return secret


async def create_provider(session: AsyncSession, spec: ProviderSpec | Mapping[str, Any], *,
                          api_key: str | None = None, cipher: CredentialCipher | None = None,
                          managed_by: str | None = None) -> ProviderRecord:
    """A new provider, with its API key encrypted when given (which needs ``cipher``)."""
    spec = validated(ProviderSpec, spec, "a provider")
    secret = None if api_key is None else _checked_secret(api_key)
    if secret is not None and cipher is None:
        raise CredentialsError("storing a provider's API key needs the credentials cipher")
    await lock_catalog(session)
    await _check_name_free(session, Provider, spec.name, "provider")
    row = Provider(id=ids.new_id(ids.PROVIDER), managed_by=managed_by, **provider_columns(spec))
    if secret is not None and cipher is not None:
        row.credentials_encrypted = cipher.encrypt(secret, bound_to=row.id)
    await _insert(session, row, f"creating provider {spec.name!r}")
    return provider_record(row)


async def get_provider(session: AsyncSession, provider_id: str) -> ProviderRecord:
    return provider_record(await _row(session, Provider, provider_id, "provider"))


async def get_provider_by_name(session: AsyncSession, name: str) -> ProviderRecord:
    row = (await session.execute(select(Provider).where(Provider.name == name))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no provider named {name!r}")
    return provider_record(row)


async def list_providers(session: AsyncSession, *, name: str | None = None, dialect: str | None = None,
                         managed_by: str | None = None, limit: int = 100,
                         after: str | None = None) -> Page[ProviderRecord]:
    """Providers matching every filter, ordered by name; ``after`` is the previous page's last name."""
    stmt = select(Provider)
    for column, value in ((Provider.name, name), (Provider.dialect, dialect),
                          (Provider.managed_by, managed_by)):
        if value is not None:
            stmt = stmt.where(column == value)
    return await page(session, stmt, Provider.name, after, limit, provider_record, lambda r: r.name)


async def update_provider(session: AsyncSession, provider_id: str, changes: Mapping[str, Any], *,
                          managed_by: ManagedBy = UNCHANGED) -> ProviderRecord:
    """Change the given ``ProviderSpec`` fields (its key: ``set_provider_key``)."""
    await lock_catalog(session)
    row = await _row(session, Provider, provider_id, "provider")
    spec = _merged(ProviderSpec, provider_spec(provider_record(row)), changes, f"provider {row.name!r}")
    await _check_name_free(session, Provider, spec.name, "provider", row.id)
    await _apply(session, row, provider_columns(spec), managed_by, f"updating provider {row.name!r}")
    return provider_record(row)


async def delete_provider(session: AsyncSession, provider_id: str) -> None:
    """Delete a provider no deployment names (``Conflict`` naming those that do)."""
    await lock_catalog(session)
    row = await _row(session, Provider, provider_id, "provider")
    users = (await session.execute(select(Deployment.name).where(Deployment.provider_id == row.id)
                                   .order_by(Deployment.name))).scalars().all()
    if users:
        raise Conflict(f"provider {row.name!r} is used by deployment(s) {_quoted(users)}; delete "
                       "them or give them another provider first")
    await _delete(session, Provider, row.id, f"deleting provider {row.name!r}")


async def set_provider_key(session: AsyncSession, provider_id: str, secret: str,
                           cipher: CredentialCipher) -> ProviderRecord:
    """Store (or replace) a provider's API key, encrypted and bound to the provider's id."""
    secret = _checked_secret(secret)
    await lock_catalog(session)
    row = await _row(session, Provider, provider_id, "provider")
    row.credentials_encrypted = cipher.encrypt(secret, bound_to=row.id)
    with translating(f"storing the API key of provider {row.name!r}"):
        await session.flush()
    await bump_revision(session)
    return provider_record(row)


async def clear_provider_key(session: AsyncSession, provider_id: str) -> ProviderRecord:
    """Forget a provider's API key; ``NotFound`` if it has none."""
    await lock_catalog(session)
    row = await _row(session, Provider, provider_id, "provider")
    if row.credentials_encrypted is None:
        raise NotFound(f"provider {row.name!r} has no stored API key")
    row.credentials_encrypted = None
    with translating(f"clearing the API key of provider {row.name!r}"):
        await session.flush()
    await bump_revision(session)
    return provider_record(row)
