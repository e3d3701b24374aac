"""Model grants: which models a team may use. Granting is idempotent.

Model names are not foreign keys: models may come from the platform YAML as
well as the ``models`` table, and a grant may be made before its model exists.
Mutations that change something bump the revision; no-ops do not.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import NotFound, translating
from inferenceops.store.records import GrantRecord
from inferenceops.store.repo._common import bump_revision, check_name
from inferenceops.store.tables import utcnow
from inferenceops.store.tables_identity import Grant


def grant_record(row: Grant) -> GrantRecord:
    return GrantRecord(row.team_id, row.model, row.created_at)


async def grant(session: AsyncSession, team_id: str, model: str) -> bool:
    """Let a team use ``model``; True if newly granted, False if it already was."""
    model = check_name("a model name", model)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    # INSERT … ON CONFLICT DO NOTHING: two concurrent grants of the same model both succeed.
    stmt = dialect.insert(Grant).values(team_id=team_id, model=model, created_at=utcnow())
    with translating(f"granting {model!r} to team {team_id!r}"):
        result = await session.execute(stmt.on_conflict_do_nothing())
    if result.rowcount == 0:  # type: ignore[attr-defined]
        return False
    await bump_revision(session)
    return True


async def revoke_grant(session: AsyncSession, team_id: str, model: str) -> None:
    result = await session.execute(delete(Grant).where(Grant.team_id == team_id, Grant.model == model))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"team {team_id!r} has no grant for {model!r}")
    await bump_revision(session)


async def list_grants(session: AsyncSession, team_id: str) -> tuple[GrantRecord, ...]:
    rows = (await session.execute(select(Grant).where(Grant.team_id == team_id)
                                  .order_by(Grant.model))).scalars()
    return tuple(grant_record(row) for row in rows)
