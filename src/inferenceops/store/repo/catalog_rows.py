"""The catalog's write discipline, shared by the catalog's kinds and by what hangs on them.

``lock_catalog`` serialises catalog writes (adapters, prices and drains take it too);
``UNCHANGED`` leaves ``managed_by`` as it is on update; and the row steps that providers,
deployments and models each repeat: a row by id, a free name, an id by name, names by id, a
spec merged with changes, insert, write what changed, delete — each bumping the revision when
it changes something. Kept apart from ``catalog`` so its providers (``catalog_providers``)
and its deployments and models share one copy.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final, TypeVar

from pydantic import BaseModel
from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import Conflict, Invalid, NotFound, translating
from inferenceops.store.repo._common import bump_revision
from inferenceops.store.repo.catalog_specs import validated
from inferenceops.store.tables_catalog import Deployment, Model, Provider

#: Fixed advisory-lock key ("infops" + 0x0003) serialising catalog writes on PostgreSQL.
CATALOG_LOCK_KEY: Final = 0x696E_666F_7073_0003
S = TypeVar("S", bound=BaseModel)
Row = TypeVar("Row", Provider, Deployment, Model)


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


#: ``managed_by`` on update: leave it as it is.
UNCHANGED: Final = _Unchanged()
ManagedBy = str | None | _Unchanged


async def lock_catalog(session: AsyncSession) -> None:
    """Serialise catalog writes until the caller's transaction ends (PostgreSQL; SQLite already is)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CATALOG_LOCK_KEY})


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


async def _row(session: AsyncSession, table: type[Row], row_id: str, what: str) -> Row:
    row = await session.get(table, row_id)
    if row is None:
        raise NotFound(f"no {what} with id {row_id!r}")
    return row


async def _check_name_free(session: AsyncSession, table: type[Row], name: str, what: str,
                           row_id: str | None = None) -> None:
    stmt = select(table.id).where(table.name == name)
    if row_id is not None:
        stmt = stmt.where(table.id != row_id)
    if (await session.execute(stmt)).first() is not None:
        raise Conflict(f"a {what} named {name!r} already exists")


async def _id_named(session: AsyncSession, table: type[Row], name: str | None, what: str,
                    referrer: str | None) -> str | None:
    """The id of the ``what`` called ``name`` (None for None); ``NotFound`` naming who asked."""
    if name is None:
        return None
    found = (await session.execute(select(table.id).where(table.name == name))).scalar_one_or_none()
    if found is None:
        raise NotFound(f"{referrer} names {what} {name!r}, which does not exist" if referrer
                       else f"no {what} named {name!r}")
    return str(found)


async def _names(session: AsyncSession, table: type[Row], row_ids: Collection[str | None]) -> dict[str, str]:
    wanted = {i for i in row_ids if i is not None}
    if not wanted:
        return {}
    rows = await session.execute(select(table.id, table.name).where(table.id.in_(wanted)))
    return {row.id: row.name for row in rows}


def _merged(kind: type[S], current: S, changes: Mapping[str, Any], what: str) -> S:
    """The stored spec with ``changes`` (top-level fields) applied, validated whole."""
    if not isinstance(changes, Mapping):
        raise Invalid(f"{what}: changes must be an object of {kind.__name__} fields")
    return validated(kind, {**current.model_dump(), **changes}, what)


async def _insert(session: AsyncSession, row: Provider | Deployment | Model, doing: str) -> None:
    with translating(doing):
        session.add(row)
        await session.flush()
    await bump_revision(session)


async def _apply(session: AsyncSession, row: Provider | Deployment | Model, columns: dict[str, Any],
                 managed_by: ManagedBy, doing: str) -> bool:
    """Write the columns that differ; bump the revision if any did. True if something changed."""
    if not isinstance(managed_by, _Unchanged):
        columns = {**columns, "managed_by": managed_by}
    changed = {k: v for k, v in columns.items() if getattr(row, k) != v}
    if not changed:
        return False
    for name, value in changed.items():
        setattr(row, name, value)
    with translating(doing):
        await session.flush()
    await bump_revision(session)
    return True


async def _delete(session: AsyncSession, table: type[Row], row_id: str, doing: str) -> None:
    try:
        with translating(doing):
            await session.execute(delete(table).where(table.id == row_id))
    except NotFound as error:  # a foreign key refused: a row still names it
        raise Conflict(f"{doing}: other rows still refer to it") from error
    await bump_revision(session)
