"""The audit hash chain, pure: canonical encoding, hash sensitivity, verification and anchors."""

from __future__ import annotations

import dataclasses
import hashlib
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from inferenceops.audit import (
    GENESIS,
    Anchor,
    Problem,
    VerifyReport,
    canonical_json,
    entry_hash,
    format_report,
    verify,
)
from inferenceops.store.records import AuditEntry

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


Entry = AuditEntry  # the store's own record: the chain reads only its attributes


FIELDS: dict[str, Any] = {
    "seq": 7, "at": T0, "actor": "user:usr_1", "action": "team.update", "target_type": "team",
    "target_id": "team_1", "before": {"name": "a", "weight": 1}, "after": {"name": "b", "weight": 2},
    "source": "10.0.0.1",
}


def _hash(prev: bytes = GENESIS, **changes: Any) -> bytes:
    return entry_hash(prev, **{**FIELDS, **changes})


def chain(n: int, start: bytes = GENESIS) -> list[Entry]:
    entries, prev = [], start
    for seq in range(1, n + 1):
        fields = {**FIELDS, "seq": seq, "at": T0 + timedelta(seconds=seq), "target_id": f"t{seq}",
                  "after": {"n": seq}}
        digest = entry_hash(prev, **fields)
        entries.append(Entry(**fields, prev_hash=prev, hash=digest))
        prev = digest
    return entries


def rehash(entry: Entry, **changes: Any) -> Entry:
    """The entry changed and its own hash recomputed (what an attacker with SQL access can do)."""
    edited = dataclasses.replace(entry, **changes)
    fields = {f: getattr(edited, f) for f in FIELDS}
    return dataclasses.replace(edited, hash=entry_hash(edited.prev_hash, **fields))


# --- canonical encoding --------------------------------------------------------------------------


def test_golden_encoding_and_hash_never_change() -> None:
    """The format is persistent: stored hashes must verify forever, so these bytes are frozen."""
    expected = (
        b'{"action":"team.update","actor":"user:usr_1","after":{"name":"b","weight":2},'
        b'"at":"2026-01-02T03:04:05.678901+00:00","before":{"name":"a","weight":1},'
        b'"seq":7,"source":"10.0.0.1","target_id":"team_1","target_type":"team"}')
    assert canonical_json(**FIELDS) == expected
    assert _hash() == hashlib.sha256(b"inferenceops-audit-v1\0" + bytes(32) + expected).digest()
    assert _hash().hex() == "aa4a8b91f65cd8050e2d0af6e8c2d58eabcaae0240c76f5d65eccf236781b061"


def test_encoding_is_stable_under_key_order_offsets_and_container_type() -> None:
    shuffled = {"weight": 2, "name": "b"}
    nested_a = {"z": {"b": 1, "a": [{"y": 1, "x": 2}]}, "a": 0}
    nested_b = {"a": 0, "z": {"a": [{"x": 2, "y": 1}], "b": 1}}
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    assert _hash(after=shuffled) == _hash()
    assert _hash(after=nested_a) == _hash(after=nested_b)
    assert _hash(at=plus_two) == _hash()
    assert _hash(after={"l": (1, 2)}) == _hash(after={"l": [1, 2]})
    assert _hash() == _hash()


@pytest.mark.parametrize(("written", "read_back"), [
    (1.0, 1), (-0.0, 0), (1e16, 10_000_000_000_000_000), (1e19, 10**19), (2.5, 2.5), (1e300, 1e300),
])
def test_numbers_hash_by_value(written: float, read_back: Any) -> None:
    """PostgreSQL JSONB returns 1e16 as 10000000000000000 and -0.0 as 0: the hash must not care."""
    assert _hash(after={"x": written}) == _hash(after={"x": read_back})


def test_different_numbers_and_types_differ() -> None:
    hashes = {_hash(after={"x": value}) for value in (1, 2, 1.5, "1", True, None, [1], {"1": 1})}
    assert len(hashes) == 8


@pytest.mark.parametrize(("field", "value"), [
    ("seq", 8), ("at", T0 + timedelta(microseconds=1)), ("actor", "user:usr_2"),
    ("action", "team.delete"), ("target_type", "user"), ("target_id", "team_2"),
    ("before", {"name": "a", "weight": 3}), ("after", None), ("source", None), ("source", ""),
])
def test_any_single_field_change_changes_the_hash(field: str, value: Any) -> None:
    assert _hash(**{field: value}) != _hash()


def test_prev_hash_change_changes_the_hash() -> None:
    assert _hash(b"\x01" + bytes(31)) != _hash()


def test_field_boundaries_are_unambiguous() -> None:
    assert _hash(actor="ab", action="c") != _hash(actor="a", action="bc")
    assert _hash(target_type="team", target_id="x") != _hash(target_type="teamx", target_id="")


def test_unicode_is_hashed_as_given() -> None:
    composed = unicodedata.normalize("NFC", "café")
    decomposed = unicodedata.normalize("NFD", "café")
    assert _hash(actor=composed) != _hash(actor=decomposed)  # different data, no normalisation
    assert _hash(after={"名前": "😀"}) == _hash(after={"名前": "😀"})
    assert '"名前":"😀"'.encode() in canonical_json(**{**FIELDS, "after": {"名前": "😀"}})


def test_none_missing_and_empty_differ() -> None:
    assert len({_hash(before=None), _hash(before={}), _hash(before={"a": None})}) == 3
    assert _hash(after={"a": None, "b": 1}) != _hash(after={"b": 1})


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        _hash(at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="32 raw bytes"):
        _hash(b"short")
    with pytest.raises(TypeError):
        _hash(after={"x": object()})


# --- verification --------------------------------------------------------------------------------


def test_intact_chain_verifies() -> None:
    entries = chain(50)
    report = verify(entries)
    assert report.ok and report.verified == 50 and report.last_seq == 50
    assert report.anchor == Anchor(50, entries[-1].hash)
    assert entries[0].prev_hash == GENESIS


def test_empty_log_verifies() -> None:
    report = verify([])
    assert report.ok and report.verified == 0 and report.anchor == Anchor(0, GENESIS)


def test_edited_entry_is_named() -> None:
    entries = chain(30)
    entries[16] = dataclasses.replace(entries[16], after={"n": 999})
    report = verify(entries)
    assert (report.broken_seq, report.problem, report.verified) == (17, Problem.EDITED, 16)


def test_rehashed_entry_breaks_the_next_link() -> None:
    entries = chain(30)
    entries[16] = rehash(entries[16], actor="mallory")
    report = verify(entries)
    assert (report.broken_seq, report.problem) == (18, Problem.BROKEN_LINK)


@pytest.mark.parametrize("deleted", [1, 17, 29])
def test_deleted_entry_is_a_gap(deleted: int) -> None:
    entries = [e for e in chain(30) if e.seq != deleted]
    report = verify(entries)
    assert (report.broken_seq, report.problem, report.verified) == (deleted, Problem.MISSING, deleted - 1)


def test_reordered_or_repeated_entries_are_caught() -> None:
    entries = chain(5)
    assert verify([*entries[:3], entries[2], *entries[3:]]).problem == Problem.OUT_OF_ORDER
    assert verify([entries[0], entries[2], entries[1]]).problem == Problem.MISSING


def test_forged_genesis_is_a_broken_link() -> None:
    forged = chain(3, start=b"\x07" * 32)
    assert (verify(forged).broken_seq, verify(forged).problem) == (1, Problem.BROKEN_LINK)


def test_deleted_tail_is_caught_only_with_an_anchor() -> None:
    entries = chain(100)
    anchor = verify(entries).anchor
    truncated = entries[:90]
    assert verify(truncated).ok  # a shorter chain is still a valid chain
    report = verify(truncated, anchor)
    assert (report.broken_seq, report.problem, report.verified) == (91, Problem.TRUNCATED, 90)
    assert "91..100" in (report.detail or "")


def test_rewritten_suffix_is_caught_only_with_an_anchor() -> None:
    entries = chain(20)
    anchor = verify(entries).anchor
    forged, prev = list(entries[:9]), entries[8].hash
    for entry in entries[9:]:  # edit entry 10 and recompute every later link
        changed = rehash(dataclasses.replace(entry, prev_hash=prev,
                                             actor="mallory" if entry.seq == 10 else entry.actor))
        forged.append(changed)
        prev = changed.hash
    assert verify(forged).ok
    report = verify(forged, anchor)
    assert (report.broken_seq, report.problem) == (20, Problem.ANCHOR_MISMATCH)


def test_anchor_in_the_past_matches_and_later_entries_are_fine() -> None:
    entries = chain(40)
    report = verify(entries, verify(entries[:25]).anchor)
    assert report.ok and report.anchor_checked == Anchor(25, entries[24].hash) and report.verified == 40


def test_verify_stops_reading_at_the_first_break() -> None:
    entries = chain(10)
    entries[2] = dataclasses.replace(entries[2], actor="x")
    seen: list[int] = []

    def stream() -> Iterator[Entry]:
        for entry in entries:
            seen.append(entry.seq)
            yield entry

    assert verify(stream()).broken_seq == 3 and seen == [1, 2, 3]


def test_anchor_text_round_trip_and_errors() -> None:
    anchor = Anchor(42, bytes(range(32)))
    assert Anchor.parse(str(anchor)) == anchor and Anchor.parse(f" {anchor}\n") == anchor
    for bad in ("42", "x:00", "42:abc", f"-1:{'00' * 32}", f"0:{'11' * 32}", f"5:{'00' * 31}"):
        with pytest.raises(ValueError, match="anchor"):
            Anchor.parse(bad)


def test_format_report() -> None:
    entries = chain(5)
    ok = format_report(verify(entries))
    assert "OK: 5 entries verified (seq 1..5)" in ok and "no anchor given" in ok
    assert f"5:{entries[-1].hash.hex()}" in ok
    anchored = format_report(verify(entries, Anchor(3, entries[2].hash)))
    assert "anchor 3 matched" in anchored
    broken = format_report(verify([entries[0], entries[2]]))
    assert "BROKEN at seq 2 (missing)" in broken and "1 entries (seq 1..1)" in broken
    assert isinstance(verify([]), VerifyReport) and "(none)" in format_report(verify([]))
