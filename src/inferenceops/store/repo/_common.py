"""Helpers shared by the repositories: the revision counter, pagination, value checks.

Every repository mutation that changes what a snapshot would contain calls
``bump_revision`` in its own transaction, so replicas polling the one
``control_state`` row learn of every change. Reads never bump it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.db import REVISION_BUMPED
from inferenceops.store.errors import Invalid, SchemaOutdated
from inferenceops.store.notify import REVISION_CHANNEL
from inferenceops.store.records import Page
from inferenceops.store.tables import REVISION_KEY, ControlState

T = TypeVar("T")
MAX_PAGE = 1000


async def bump_revision(session: AsyncSession) -> int:
    """Add one to ``revision`` in the caller's transaction; returns the new value.

    Also tells the serving processes, once the transaction commits: on PostgreSQL a
    ``NOTIFY`` on ``REVISION_CHANNEL`` (every replica listening rebuilds at once); in this
    process, ``Database.on_change`` (how SQLite's single process hears of it).
    """
    new = (await session.execute(
        update(ControlState).where(ControlState.key == REVISION_KEY)
        .values(value=ControlState.value + 1).returning(ControlState.value))).scalar_one_or_none()
    if new is None:
        raise SchemaOutdated("control_state has no 'revision' row; run `inferenceops migrate`")
    session.info[REVISION_BUMPED] = True
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, :revision)"),
                              {"channel": REVISION_CHANNEL, "revision": str(new)})
    return new


async def revision(session: AsyncSession) -> int:
    """The current revision (bumped by every snapshot-relevant mutation)."""
    value = (await session.execute(
        select(ControlState.value).where(ControlState.key == REVISION_KEY))).scalar_one_or_none()
    if value is None:
        raise SchemaOutdated("control_state has no 'revision' row; run `inferenceops migrate`")
    return value


async def page(session: AsyncSession, stmt: Select[Any], order: Any, after: str | None, limit: int,
               record: Callable[[Any], T], cursor: Callable[[T], str]) -> Page[T]:
    """Keyset pagination on the unique column ``order``: rows after ``after``, at most ``limit``."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    if after is not None:
        stmt = stmt.where(order > after)
    rows = (await session.execute(stmt.order_by(order).limit(limit))).scalars().all()
    items = tuple(record(row) for row in rows)
    return Page(items, cursor(items[-1]) if len(items) == limit else None)


def check_choice(what: str, value: str, allowed: Sequence[str], *, field: str | None = None) -> str:
    if value not in allowed:
        raise Invalid(f"{what} must be one of {', '.join(allowed)}; got {value!r}", field=field)
    return value


def check_name(what: str, value: str, *, field: str | None = None) -> str:
    value = value.strip()
    if not value:
        raise Invalid(f"{what} must not be empty", field=field)
    return value


def sorted_unique(values: Iterable[str]) -> list[str]:
    return sorted(set(values))
