"""Files rows (store.repo.files) on SQLite and PostgreSQL: an owner sees only its own; listing
pages by creation time on the id alone, both ways, and survives its cursor being deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inferenceops.store import Database, Invalid
from inferenceops.store.ids import FILE, new_sortable_id
from inferenceops.store.records import FileOwner, FileRecord
from inferenceops.store.repo import files as repo

TEAM_A = FileOwner("team_a", "usr_1")
TEAM_B = FileOwner("team_b", "usr_1")  # the same person, through another team's key
SOLO = FileOwner(None, "usr_1")  # a key without a team: its principal's own files
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _record(owner: FileOwner, at: datetime, *, purpose: str = "batch") -> FileRecord:
    file_id = new_sortable_id(FILE, at, sep="-")
    return FileRecord(file_id, owner.team_id, owner.principal_id, "key_x", purpose, "in.jsonl",
                      10, 2, "processed", f"{file_id}.jsonl", at, None)


async def _add(db: Database, owner: FileOwner, at: datetime, **kw: str) -> FileRecord:
    async with db.transaction() as tx:
        return await repo.add_file(tx, _record(owner, at, **kw))


async def test_a_file_is_found_by_its_owner_only(db: Database) -> None:
    added = await _add(db, TEAM_A, T0)
    async with db.read() as tx:
        assert await repo.get_file(tx, added.id, TEAM_A) == added
        assert await repo.get_file(tx, added.id, TEAM_B) is None
        assert await repo.get_file(tx, added.id, SOLO) is None
        assert await repo.list_files(tx, TEAM_B) == ((), False)
    async with db.transaction() as tx:
        assert await repo.delete_file(tx, added.id, TEAM_B) is None
        assert await repo.delete_file(tx, added.id, SOLO) is None
    async with db.transaction() as tx:
        assert await repo.delete_file(tx, added.id, TEAM_A) == added
    async with db.read() as tx:
        assert await repo.get_file(tx, added.id, TEAM_A) is None


async def test_a_key_without_a_team_sees_its_principals_files_not_a_teams(db: Database) -> None:
    mine = await _add(db, SOLO, T0)
    await _add(db, TEAM_A, T0)
    await _add(db, FileOwner(None, "usr_2"), T0)
    async with db.read() as tx:
        assert (await repo.list_files(tx, SOLO))[0] == (mine,)


async def test_listing_pages_by_creation_time_and_survives_a_deleted_cursor(db: Database) -> None:
    added = [await _add(db, TEAM_A, T0 + timedelta(seconds=i)) for i in range(5)]
    await _add(db, TEAM_B, T0 + timedelta(seconds=2))
    async with db.read() as tx:
        newest, more = await repo.list_files(tx, TEAM_A, limit=2)
        assert [f.id for f in newest] == [added[4].id, added[3].id] and more
        oldest, more = await repo.list_files(tx, TEAM_A, limit=2, order="asc")
        assert [f.id for f in oldest] == [added[0].id, added[1].id] and more
        rest, more = await repo.list_files(tx, TEAM_A, after=added[3].id, limit=10)
        assert [f.id for f in rest] == [added[2].id, added[1].id, added[0].id] and not more
    async with db.transaction() as tx:
        await repo.delete_file(tx, added[3].id, TEAM_A)
    async with db.read() as tx:
        rest, _ = await repo.list_files(tx, TEAM_A, after=added[3].id, limit=10)
        assert [f.id for f in rest] == [added[2].id, added[1].id, added[0].id]
        assert await repo.list_files(tx, TEAM_A, purpose="batch_output") == ((), False)


async def test_ids_of_one_millisecond_to_the_next_sort_on_every_backend(db: Database) -> None:
    """The id order is the time order, whatever the database's collation."""
    stamps = [T0 + timedelta(milliseconds=m) for m in (0, 1, 2, 999, 1000, 10**6, 10**9)]
    added = [await _add(db, TEAM_A, at) for at in reversed(stamps)]
    async with db.read() as tx:
        listed, _ = await repo.list_files(tx, TEAM_A, order="asc")
    assert [f.created_at for f in listed] == stamps
    assert sorted(f.id for f in added) == [f.id for f in listed]


async def test_unknown_purpose_or_status_is_refused(db: Database) -> None:
    async with db.transaction() as tx:
        with pytest.raises(Invalid):
            await repo.add_file(tx, _record(TEAM_A, T0, purpose="fine-tune"))
