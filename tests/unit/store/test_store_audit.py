"""The audit log in the store: append, list, iterate; tampering; atomicity; one chain under concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, text, update

from inferenceops.audit import Anchor, Problem, entry_hash
from inferenceops.audit.check import verify_store
from inferenceops.store import Database, Invalid, SchemaOutdated, repo
from inferenceops.store.records import AuditEntry
from inferenceops.store.repo.audit import AUDIT_LOCK_KEY
from inferenceops.store.tables import AuditEntry as AuditRow
from inferenceops.store.tables import utcnow

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def _append_many(db: Database, n: int, **fields: Any) -> list[AuditEntry]:
    out = []
    for i in range(n):
        async with db.transaction() as tx:
            out.append(await repo.append_audit(
                tx, actor=f"user:u{i % 3}", action="team.update" if i % 2 else "team.create",
                target_type="team" if i % 5 else "user", target_id=f"t{i % 7}",
                before=None if i % 2 == 0 else {"weight": i - 1}, after={"weight": i},
                source="10.0.0.1", at=T0 + timedelta(minutes=i), **fields))
    return out


async def _all(db: Database) -> list[AuditEntry]:
    async with db.read() as session:
        return list((await repo.list_audit(session, limit=1000)).items)


async def _revision(db: Database) -> int:
    async with db.read() as session:
        return await repo.revision(session)


async def _sql(db: Database, statement: Any, params: dict[str, Any] | None = None) -> None:
    async with db.transaction() as tx:
        await tx.execute(statement, params or {})


# --- append, list, iterate -----------------------------------------------------------------------


async def test_append_50_then_verify_list_filter_paginate(db: Database, store_url: str) -> None:
    revision = await _revision(db)
    appended = await _append_many(db, 50)
    assert await _revision(db) == revision  # the data plane reads nothing from the audit log
    assert [e.seq for e in appended] == list(range(1, 51))

    report = await verify_store(store_url)
    assert report.ok and report.verified == 50 and report.anchor == Anchor(50, appended[-1].hash)
    assert [e async for e in repo.iter_audit(db, batch=7)] == appended  # equal field by field

    async with db.read() as session:
        pages, after = [], None
        while True:
            page = await repo.list_audit(session, limit=7, after_seq=after)
            pages.append(page.items)
            if page.next_after is None:
                break
            after = int(page.next_after)
        assert [e for p in pages for e in p] == appended and len(pages) == 8

        async def listed(**filters: Any) -> list[int]:
            return [e.seq for e in (await repo.list_audit(session, limit=1000, **filters)).items]

        assert await listed(actor="user:u1") == [e.seq for e in appended if e.actor == "user:u1"]
        assert await listed(action="team.create", target_type="user") == [
            e.seq for e in appended if e.action == "team.create" and e.target_type == "user"]
        assert await listed(target_type="team", target_id="t3") == [
            e.seq for e in appended if e.target_type == "team" and e.target_id == "t3"]
        assert await listed(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=20)) == list(
            range(11, 21))
        assert await listed(actor="user:u0", after_seq=40) == [43, 46, 49]
        assert await listed(actor="nobody") == []


async def test_json_round_trips_exactly_and_verifies(db: Database, store_url: str) -> None:
    """JSONB re-orders keys and re-spells some numbers; what is read back must hash as written."""
    team = dataclasses.replace(
        (await _append_team(db)), created_at=T0, updated_at=T0 + timedelta(microseconds=7))
    awkward = [
        None, {}, {"a": None}, {"bb": 1, "a": {"zz": [3, {"y": 1, "x": 2}], "b": None}},
        {"floats": [1.0, -0.0, 0.1, 1e16, 1e19, 1.5e300, 2.5e-5, 123456789.123456789]},
        {"ints": [0, -1, 2**63 - 1, 2**64 - 1], "bool": [True, False]},
        {"unicode": "café ☕ 名前 😀", "nfd": "cafe\u0301", "escapes": "\"\\\n\t\u2028"},
        {"scopes": frozenset({"inference", "batch"})}, team,
    ]
    async with db.transaction() as tx:
        written = [await repo.append_audit(tx, actor="user:ü", action="a", target_type="t",
                                           target_id=str(i), before=value, after=value)
                   for i, value in enumerate(awkward)]
    read = await _all(db)
    assert [e.hash for e in read] == [e.hash for e in written]
    assert read[0].before is None and read[1].before == {} and read[2].before == {"a": None}
    assert read[7].after == {"scopes": ["batch", "inference"]}
    assert read[8].after == {"id": team.id, "name": "audit", "weight": 1,
                             "created_at": "2026-03-01T09:00:00+00:00",
                             "updated_at": "2026-03-01T09:00:00.000007+00:00",
                             "retention": "none", "retention_days": None}
    assert (await verify_store(store_url)).ok


async def _append_team(db: Database) -> Any:
    async with db.transaction() as tx:
        return await repo.create_team(tx, "audit")


async def test_bad_entries_are_invalid(db: Database) -> None:
    base: dict[str, Any] = {"actor": "a", "action": "b", "target_type": "c", "target_id": "d"}
    async with db.transaction() as tx:
        with pytest.raises(Invalid, match="secret"):
            await repo.append_audit(tx, **base, after={"digest": b"\x01" * 32})
        for bad in ({"actor": ""}, {"after": [1, 2]}, {"before": {"x": object()}},
                    {"at": datetime(2026, 1, 1)}, {"source": 5}):
            with pytest.raises(Invalid):
                await repo.append_audit(tx, **{**base, **bad})
        with pytest.raises(Invalid):
            await repo.list_audit(tx, limit=0)
        with pytest.raises(Invalid, match="naive"):
            await repo.list_audit(tx, since=datetime(2026, 1, 1))
    assert await _all(db) == []


async def test_verify_an_unmigrated_database_says_to_migrate(fresh: Any) -> None:
    with pytest.raises(SchemaOutdated, match="migrate"):
        await verify_store(await fresh.new())


# --- tamper detection ----------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["actor", "after", "before", "at", "source", "target_id"])
async def test_edited_row_is_named(db: Database, store_url: str, column: str) -> None:
    await _append_many(db, 30)
    value = {"actor": "user:mallory", "after": {"weight": 1000}, "before": {"weight": 0},
             "at": T0 + timedelta(minutes=16, microseconds=1), "source": None, "target_id": "t0x"}[column]
    if column == "actor":  # plain SQL, as an attacker at a psql/sqlite3 prompt would
        await _sql(db, text("UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 17"))
    else:
        await _sql(db, update(AuditRow).where(AuditRow.seq == 17).values({column: value}))
    report = await verify_store(store_url)
    assert (report.broken_seq, report.problem, report.verified) == (17, Problem.EDITED, 16)
    assert report.last_seq == 16


async def test_deleted_middle_row_is_named(db: Database, store_url: str) -> None:
    await _append_many(db, 30)
    await _sql(db, text("DELETE FROM audit_log WHERE seq = 17"))
    report = await verify_store(store_url, batch=5)
    assert (report.broken_seq, report.problem, report.verified) == (17, Problem.MISSING, 16)


async def test_recomputed_hash_breaks_the_next_link(db: Database, store_url: str) -> None:
    entries = await _append_many(db, 30)
    forged = dataclasses.replace(entries[16], after={"weight": 1000})
    digest = entry_hash(forged.prev_hash, forged.seq, forged.at, forged.actor, forged.action,
                        forged.target_type, forged.target_id, forged.before, forged.after, forged.source)
    await _sql(db, update(AuditRow).where(AuditRow.seq == 17).values(after=forged.after, hash=digest))
    report = await verify_store(store_url)
    assert (report.broken_seq, report.problem, report.verified) == (18, Problem.BROKEN_LINK, 17)


async def test_deleted_tail_is_caught_only_with_an_anchor(db: Database, store_url: str) -> None:
    await _append_many(db, 50)
    anchor = (await verify_store(store_url)).anchor
    await _sql(db, delete(AuditRow).where(AuditRow.seq > 40))
    assert (await verify_store(store_url)).ok  # the chain alone cannot tell
    report = await verify_store(store_url, anchor=Anchor.parse(str(anchor)))
    assert (report.broken_seq, report.problem, report.verified) == (41, Problem.TRUNCATED, 40)
    # Appending again re-uses the deleted seqs, but not their hashes: the anchor still catches it.
    await _append_many(db, 10)
    report = await verify_store(store_url, anchor=anchor)
    assert (report.broken_seq, report.problem) == (50, Problem.ANCHOR_MISMATCH)


# --- atomicity -----------------------------------------------------------------------------------


async def test_append_rolls_back_with_the_mutation(db: Database, store_url: str) -> None:
    first = (await _append_many(db, 1))[0]
    revision = await _revision(db)
    with pytest.raises(RuntimeError, match="boom"):
        async with db.transaction() as tx:
            team = await repo.create_team(tx, "doomed")
            await repo.append_audit(tx, actor="user:u", action="team.create", target_type="team",
                                    target_id=team.id, after={"name": team.name})
            raise RuntimeError("boom")
    async with db.read() as session:
        assert (await repo.list_teams(session)).items == ()
    assert await _all(db) == [first] and await _revision(db) == revision
    async with db.transaction() as tx:  # no gap left behind (no sequence consumed on PostgreSQL)
        team = await repo.create_team(tx, "kept")
        kept = await repo.append_audit(tx, actor="user:u", action="team.create", target_type="team",
                                       target_id=team.id, after={"name": team.name})
    assert kept.seq == 2 and kept.prev_hash == first.hash
    assert await _revision(db) == revision + 1  # the team bumped it once; the audit entry did not
    assert (await verify_store(store_url)).verified == 2


# --- concurrency ---------------------------------------------------------------------------------


def _assert_one_chain(entries: list[AuditEntry], writers: list[str], each: int) -> None:
    assert [e.seq for e in entries] == list(range(1, len(writers) * each + 1))
    assert sorted((e.actor, int(e.target_id)) for e in entries) == sorted(
        (w, i) for w in writers for i in range(each))


async def test_concurrent_tasks_make_one_chain(db: Database, store_url: str) -> None:
    async def writer(name: str) -> None:
        for i in range(25):
            async with db.transaction() as tx:
                await repo.append_audit(tx, actor=name, action="test.append", target_type="test",
                                        target_id=str(i))

    names = [f"task{t}" for t in range(4)]
    await asyncio.gather(*(writer(name) for name in names))
    _assert_one_chain(await _all(db), names, 25)
    report = await verify_store(store_url)
    assert report.ok and report.verified == 100


_CHILD = """
import asyncio, sys
from inferenceops.store import Database, repo

async def main(url: str, name: str) -> None:
    db = Database(url)
    try:
        async with db.read() as session:  # connected and migrated before the start signal
            await repo.revision(session)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def writer(task: str) -> None:
            for i in range(25):
                async with db.transaction() as tx:
                    await repo.append_audit(tx, actor=task, action="test.append",
                                            target_type="test", target_id=str(i))

        await asyncio.gather(writer(name + "-t0"), writer(name + "-t1"))
    finally:
        await db.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_concurrent_processes_make_one_chain(db: Database, store_url: str) -> None:
    """Two processes × two tasks × 25 appends: the advisory lock (PostgreSQL) / BEGIN IMMEDIATE (SQLite)."""
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, store_url, f"proc{p}", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for p in range(2)]
    try:
        for proc in procs:  # both are connected before either starts appending
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            assert line == b"ready\n", (line, await proc.stderr.read() if proc.stderr else b"")
        results = await asyncio.gather(*(proc.communicate(b"go\n") for proc in procs))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    for proc, (_, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr.decode()
    entries = await _all(db)
    _assert_one_chain(entries, [f"proc{p}-t{t}" for p in range(2) for t in range(2)], 25)
    report = await verify_store(store_url)
    assert report.ok and report.verified == 100


async def test_postgresql_append_holds_the_advisory_lock_until_commit(db: Database, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL only: SQLite appends are serialised by BEGIN IMMEDIATE")
    # This test's database only: pg_locks is server-wide, and another test's database (a
    # gateway appending audit in the other xdist worker) may hold the same key meanwhile.
    held = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = :key")

    async def lock_holders() -> int:
        async with db.read() as other:
            return int((await other.execute(held, {"key": AUDIT_LOCK_KEY})).scalar_one())

    async with db.transaction() as tx:
        await repo.append_audit(tx, actor="a", action="b", target_type="c", target_id="d", at=utcnow())
        assert await lock_holders() == 1
    assert await lock_holders() == 0
