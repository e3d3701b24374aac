"""Body retention in the store: teams' settings, retained bodies, the sweep and the export.

A team's retention is a row of ``team_retention`` only when it is not the default
(``none``); setting it bumps the revision, so every replica's snapshot learns it within a
refresh. Bodies are written in batches by the outbox writer, deleted by the retention
sweep (``retention.sweeper``) in bounded statements, and read by team and time for the
compliance export, in pages on the row id.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.platform.retention import DEFAULT, NONE_MODE, Retention
from inferenceops.store.errors import NotFound, translating
from inferenceops.store.records import TeamRecord
from inferenceops.store.repo._common import bump_revision
from inferenceops.store.tables_identity import Team
from inferenceops.store.tables_retention import RetainedBody, TeamRetention

#: Rows one sweep statement deletes at most: short transactions, no long lock on SQLite.
SWEEP_BATCH = 1000


async def retention_of(session: AsyncSession, team_ids: Collection[str]) -> dict[str, Retention]:
    """The retention of each of ``team_ids`` that is not the default."""
    if not team_ids:
        return {}
    rows = await session.execute(select(TeamRetention.team_id, TeamRetention.mode, TeamRetention.days)
                                 .where(TeamRetention.team_id.in_(list(team_ids))))
    return {team_id: Retention(mode, days) for team_id, mode, days in rows}


async def with_retention(session: AsyncSession, teams: Sequence[TeamRecord]) -> tuple[TeamRecord, ...]:
    """``teams`` with their retention filled in (records built from the ``teams`` row alone
    carry the default)."""
    found = await retention_of(session, [t.id for t in teams])
    return tuple(replace(t, retention=found[t.id].mode, retention_days=found[t.id].days)
                 if t.id in found else t for t in teams)


async def set_retention(session: AsyncSession, team_id: str, retention: Retention) -> Retention:
    """Set a team's retention (``NotFound`` for an unknown team); the same value changes nothing."""
    if await session.get(Team, team_id) is None:
        raise NotFound(f"no team with id {team_id!r}")
    row = await session.get(TeamRetention, team_id, with_for_update=True)
    before = DEFAULT if row is None else Retention(row.mode, row.days)
    if before == retention:
        return retention
    with translating(f"setting the body retention of team {team_id!r}"):
        if retention.mode == NONE_MODE:
            await session.execute(delete(TeamRetention).where(TeamRetention.team_id == team_id))
        elif row is None:
            session.add(TeamRetention(team_id=team_id, mode=retention.mode, days=retention.days))
        else:
            row.mode, row.days = retention.mode, retention.days
        await session.flush()
    await bump_revision(session)
    return retention


async def insert_bodies(session: AsyncSession, rows: Iterable[Mapping[str, Any]]) -> None:
    """Store retained bodies (dicts of ``RetainedBody``'s columns), in one statement."""
    rows = list(rows)
    if rows:
        await session.execute(insert(RetainedBody), rows)


async def sweep(session: AsyncSession, now: datetime, keep: Mapping[str, int]) -> int:
    """Delete up to ``SWEEP_BATCH`` bodies that must go; returns how many went.

    A body goes when its ``expires_at`` has passed, when its team no longer stores bodies
    (``keep`` maps every team that does to its current days), or when it is older than its
    team's days now (retention shortened). Call again while it returns ``SWEEP_BATCH``.
    """
    b = RetainedBody.__table__.c
    due = [b.expires_at <= now, b.team_id.not_in(list(keep))]
    due += [(b.team_id == team) & (b.at < now - timedelta(days=days)) for team, days in keep.items()]
    ids = select(b.id).where(or_(*due)).limit(SWEEP_BATCH).scalar_subquery()
    result = await session.execute(delete(RetainedBody).where(b.id.in_(ids)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def export_bodies(session: AsyncSession, *, team_id: str | None, since: datetime | None,
                        until: datetime | None, request_id: str | None = None,
                        after: int | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Up to ``limit`` retained bodies in id order after ``after``, filtered (None: any)."""
    b = RetainedBody.__table__.c
    stmt = select(b.id, b.request_id, b.at, b.expires_at, b.team_id, b.key_id, b.model, b.endpoint,
                  b.stream, b.status, b.request, b.response, b.truncated)
    if team_id is not None:
        stmt = stmt.where(b.team_id == team_id)
    if since is not None:
        stmt = stmt.where(b.at >= since)
    if until is not None:
        stmt = stmt.where(b.at < until)
    if request_id is not None:
        stmt = stmt.where(b.request_id == request_id)
    if after is not None:
        stmt = stmt.where(b.id > after)
    rows = await session.execute(stmt.order_by(b.id).limit(limit))
    return [dict(row._mapping) for row in rows]
