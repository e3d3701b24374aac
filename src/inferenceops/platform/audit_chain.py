"""The audit log's hash chain: the canonical encoding of an entry and its SHA-256 link.

Each entry's hash covers the previous entry's hash and every field of the
entry itself::

    hash(n) = SHA-256( TAG || hash(n-1) || canonical_json(entry n) )
    hash(0) = GENESIS (32 zero bytes), the "previous hash" of entry 1

* ``TAG`` names the format (``inferenceops-audit-v1`` and a NUL), so a
  future encoding can coexist with this one and no other SHA-256 use of the
  same bytes can be mistaken for an audit hash.
* ``hash(n-1)`` comes first as 32 raw bytes (fixed length, so the boundary
  between it and the JSON is unambiguous).
* ``canonical_json`` is orjson with sorted keys (at every depth) of a dict
  holding *all* fields, absent values as JSON ``null``; ``seq`` is the
  integer; ``at`` is ISO-8601 in UTC with microseconds
  (``2026-01-01T12:00:00.000000+00:00``), so the same instant written with
  another offset hashes the same; strings are UTF-8 as given (no Unicode
  normalisation: composed and decomposed "é" are different data).

Numbers in ``before``/``after`` hash by value: a float with an integral value
below 2**64 hashes as that integer, so ``1.0``, ``-0.0`` and ``1e16`` hash as
``1``, ``0`` and ``10000000000000000``. PostgreSQL's JSONB does not keep
every float's spelling (it returns ``1e16`` as ``10000000000000000`` and drops
the sign of ``-0.0``), and a read-back must hash exactly as written; see
``canonical_json``.

Pure: no I/O, no clock, no store imports (``store/repo/audit.py`` calls
``entry_hash``; ``verifier`` re-computes it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

HASH_BYTES = 32
#: The "previous hash" of the first entry.
GENESIS = bytes(HASH_BYTES)
#: Format tag hashed before everything else; change it (v2) if the encoding ever changes.
TAG = b"inferenceops-audit-v1\x00"
_INTEGRAL_FLOAT_LIMIT = 2.0**64


class Chained(Protocol):
    """What the chain needs of an entry (``store.records.AuditEntry`` is one)."""

    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def target_type(self) -> str: ...
    @property
    def target_id(self) -> str: ...
    @property
    def before(self) -> Mapping[str, Any] | None: ...
    @property
    def after(self) -> Mapping[str, Any] | None: ...
    @property
    def source(self) -> str | None: ...
    @property
    def prev_hash(self) -> bytes: ...
    @property
    def hash(self) -> bytes: ...


def utc_timestamp(at: datetime) -> str:
    """``at`` as ISO-8601 UTC with microseconds; ``ValueError`` for a naive datetime."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: audit times must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _by_value(value: Any) -> Any:
    """``value`` with integral floats as ints (see the module doc); containers rebuilt, rest as is."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _INTEGRAL_FLOAT_LIMIT:
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {key: _by_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_by_value(item) for item in value]
    return value


def canonical_json(seq: int, at: datetime, actor: str, action: str, target_type: str,
                   target_id: str, before: Mapping[str, Any] | None,
                   after: Mapping[str, Any] | None, source: str | None) -> bytes:
    """The canonical JSON of an entry's fields (not its hashes); ``TypeError`` if not JSON-able."""
    fields = {
        "seq": seq, "at": utc_timestamp(at), "actor": actor, "action": action,
        "target_type": target_type, "target_id": target_id,
        "before": _by_value(before), "after": _by_value(after), "source": source,
    }
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def entry_hash(prev_hash: bytes, seq: int, at: datetime, actor: str, action: str, target_type: str,
               target_id: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
               source: str | None) -> bytes:
    """The 32-byte SHA-256 link of an entry to ``prev_hash`` (``GENESIS`` for the first entry)."""
    if not isinstance(prev_hash, bytes) or len(prev_hash) != HASH_BYTES:
        raise ValueError(f"prev_hash must be {HASH_BYTES} raw bytes, not {prev_hash!r:.80}")
    body = canonical_json(seq, at, actor, action, target_type, target_id, before, after, source)
    return hashlib.sha256(TAG + prev_hash + body).digest()


def hash_of(entry: Chained) -> bytes:
    """Re-compute the hash an entry should carry, from its fields and its ``prev_hash``."""
    return entry_hash(bytes(entry.prev_hash), entry.seq, entry.at, entry.actor, entry.action,
                      entry.target_type, entry.target_id, entry.before, entry.after, entry.source)
