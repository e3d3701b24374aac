"""The audit log table: append an entry in the caller's transaction, list with filters, iterate all.

``append_audit`` runs inside the transaction of the mutation it records, so
the two commit or roll back together. It extends one hash chain
(``inferenceops.platform.audit_chain``) and keeps it single under concurrency, across
processes and replicas:

* PostgreSQL: ``pg_advisory_xact_lock(AUDIT_LOCK_KEY)`` first, held until the
  caller's transaction ends; then the tail (seq, hash) is read — a fresh
  statement snapshot under the writer's READ COMMITTED, so it sees every
  append committed before the lock was granted.
* SQLite: write transactions already hold the database's write lock from
  ``BEGIN IMMEDIATE`` (``store.db``), so reading the tail and inserting cannot
  interleave with another writer.

``seq`` is assigned here as tail + 1, not by the column's sequence: a
PostgreSQL sequence is not transactional, and a rolled-back append would leave
a gap that looks exactly like a deleted entry. The primary key on ``seq`` is
the last line of defence — two appends that computed the same seq cannot both
commit (the loser gets ``Conflict``), so the chain can never fork.

Because the lock is held until commit, append *last* in a transaction: it
keeps the serialised section short and avoids lock-order deadlocks with row
locks the mutation takes. Appends never bump the snapshot ``revision`` (the
data plane reads nothing from the audit log). ``before``/``after`` are JSON
objects and must not hold secrets: pass records without key digests,
credentials or tokens — raw ``bytes`` anywhere in them are refused.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Row, Select, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.platform.audit_chain import GENESIS, entry_hash
from inferenceops.store.db import Database
from inferenceops.store.errors import Invalid, translating
from inferenceops.store.records import AuditEntry, Page
from inferenceops.store.repo._common import MAX_PAGE
from inferenceops.store.tables import AuditEntry as AuditRow
from inferenceops.store.tables import utcnow

#: Fixed advisory-lock key ("infops" + 0x0002) serialising appends on PostgreSQL; never change it.
AUDIT_LOCK_KEY = 0x696E_666F_7073_0002
_TABLE = AuditRow.__table__


def audit_record(row: AuditRow | Row[Any]) -> AuditEntry:
    return AuditEntry(row.seq, row.at, row.actor, row.action, row.target_type, row.target_id,
                      row.before, row.after, row.source, bytes(row.prev_hash), bytes(row.hash))


def _default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, bytes | bytearray | memoryview):
        raise TypeError("raw bytes (a key digest or secret?) do not belong in the audit log")
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _json_object(what: str, value: object) -> dict[str, Any] | None:
    """``value`` as the JSON object the database will give back (one orjson round trip)."""
    if value is None:
        return None
    try:
        loaded = orjson.loads(orjson.dumps(value, default=_default))
    except orjson.JSONEncodeError as error:
        raise Invalid(f"audit {what} must be JSON-able: {error.__cause__ or error}") from error
    if not isinstance(loaded, dict):
        raise Invalid(f"audit {what} must be a JSON object (a dict or a record), "
                      f"not {type(value).__name__}")
    return loaded


def _check_text(what: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f"an audit entry's {what} must be a non-empty string, not {value!r}")
    return value


async def _lock_chain(session: AsyncSession) -> None:
    """Serialise appends until the caller's transaction ends (PostgreSQL; SQLite already is)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})


async def append_audit(
    session: AsyncSession, *, actor: str, action: str, target_type: str, target_id: str,
    before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None,
    source: str | None = None, at: datetime | None = None,
) -> AuditEntry:
    """Append one entry to the chain in the caller's write transaction (see the module doc).

    ``before``/``after`` are JSON objects (dicts, or dataclass records; sets
    become sorted lists) without secrets; ``at`` defaults to now and must be
    timezone-aware. ``Invalid`` for bad values.
    """
    for what, value in (("actor", actor), ("action", action), ("target_type", target_type),
                        ("target_id", target_id)):
        _check_text(what, value)
    if source is not None and not isinstance(source, str):
        raise Invalid(f"an audit entry's source must be a string or None, not {source!r}")
    before_json, after_json = _json_object("before", before), _json_object("after", after)
    at = utcnow() if at is None else at
    if at.tzinfo is None or at.utcoffset() is None:
        raise Invalid(f"naive datetime {at!r}: the audit log only accepts timezone-aware times")
    at = at.astimezone(UTC)
    with translating(f"appending audit entry {action!r} on {target_type} {target_id!r}"):
        await _lock_chain(session)
        tail = (await session.execute(
            select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1))).one_or_none()
        seq, prev_hash = (1, GENESIS) if tail is None else (tail.seq + 1, bytes(tail.hash))
        digest = entry_hash(prev_hash, seq, at, actor, action, target_type, target_id,
                            before_json, after_json, source)
        entry = AuditEntry(seq, at, actor, action, target_type, target_id, before_json, after_json,
                           source, prev_hash, digest)
        await session.execute(insert(AuditRow).values(
            seq=seq, at=at, actor=actor, action=action, target_type=target_type,
            target_id=target_id, before=before_json, after=after_json, source=source,
            prev_hash=prev_hash, hash=digest))
    return entry


def _filtered(stmt: Select[Any], *, actor: str | None, action: str | None, target_type: str | None,
              target_id: str | None, since: datetime | None, until: datetime | None) -> Select[Any]:
    for column, value in ((AuditRow.actor, actor), (AuditRow.action, action),
                          (AuditRow.target_type, target_type), (AuditRow.target_id, target_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditRow.at >= since)
    if until is not None:
        stmt = stmt.where(AuditRow.at < until)
    return stmt


async def list_audit(
    session: AsyncSession, *, after_seq: int | None = None, limit: int = 100,
    actor: str | None = None, action: str | None = None, target_type: str | None = None,
    target_id: str | None = None, since: datetime | None = None, until: datetime | None = None,
) -> Page[AuditEntry]:
    """Entries in seq order matching every filter given (``since`` inclusive, ``until`` exclusive).

    Pass ``int(page.next_after)`` as ``after_seq`` for the next page (None: last page).
    """
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    stmt = _filtered(select(_TABLE), actor=actor, action=action, target_type=target_type,
                     target_id=target_id, since=since, until=until)
    if after_seq is not None:
        stmt = stmt.where(AuditRow.seq > after_seq)
    with translating("listing the audit log"):
        rows = (await session.execute(stmt.order_by(AuditRow.seq).limit(limit))).all()
    items = tuple(audit_record(row) for row in rows)
    return Page(items, str(items[-1].seq) if len(items) == limit else None)


async def iter_audit(db: Database, *, batch: int = 1000,
                     after_seq: int = 0) -> AsyncGenerator[AuditEntry, None]:
    """Every entry after ``after_seq`` in seq order, read in batches from one read snapshot.

    Close it if you stop early (``contextlib.aclosing``) so the read transaction ends promptly.
    """
    if batch < 1:
        raise Invalid(f"batch must be at least 1, not {batch}")
    async with db.read("reading the audit log") as session:
        while True:
            rows = (await session.execute(select(_TABLE).where(AuditRow.seq > after_seq)
                                          .order_by(AuditRow.seq).limit(batch))).all()
            for row in rows:
                yield audit_record(row)
            if len(rows) < batch:
                return
            after_seq = rows[-1].seq
