"""Checking an audit log against its hash chain, one entry at a time, and reporting the result.

``ChainVerifier`` is fed entries in ``seq`` order (so millions of entries
verify in constant memory) and stops at the first problem; ``verify`` runs it
over an iterable. For each entry, in this order:

    seq == previous seq + 1 (1 for the first)   else MISSING (a gap) or OUT_OF_ORDER
    prev_hash == previous entry's hash           else BROKEN_LINK
    hash == entry_hash(prev_hash, fields…)       else EDITED
    seq == anchor.seq  ⇒  hash == anchor.hash    else ANCHOR_MISMATCH
and at the end: the log reaches anchor.seq       else TRUNCATED

What this proves: the entries read form one unbroken chain from GENESIS —
none was edited, inserted, re-ordered or deleted *in the middle* unless the
attacker also rewrote every later entry. What it cannot prove on its own:

* a deleted tail (the newest entries removed) leaves a shorter chain that is
  still perfectly valid, and
* anyone with write access can recompute the whole chain from the edit point
  to the end (SHA-256 has no key).

Both are caught only by comparing against an ``Anchor`` — the (seq, hash) of
a past tip recorded *outside* the database (a ticket, a log shipper, another
system; ``VerifyReport.anchor`` prints the current one). Entries appended after
the anchor are fine. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from inferenceops.platform.audit_chain import GENESIS, HASH_BYTES, Chained, hash_of


class Problem(enum.StrEnum):
    """Why verification stopped (the ``broken_seq`` of the report says where)."""

    MISSING = "missing"                  # a seq is absent: deleted in the middle (or at the start)
    OUT_OF_ORDER = "out_of_order"        # a seq repeats or goes backwards
    BROKEN_LINK = "broken_link"          # prev_hash is not the previous entry's hash
    EDITED = "edited"                    # the stored hash does not match the entry's fields
    ANCHOR_MISMATCH = "anchor_mismatch"  # the entry at the anchor's seq is not the anchored one
    TRUNCATED = "truncated"              # the log ends before the anchor's seq


@dataclass(frozen=True, slots=True)
class Anchor:
    """A chain tip recorded outside the database, as ``"<seq>:<hex hash>"`` in text."""

    seq: int
    hash: bytes

    def __post_init__(self) -> None:
        if self.seq < 0 or len(self.hash) != HASH_BYTES or (self.seq == 0 and self.hash != GENESIS):
            raise ValueError(f"an anchor is a seq >= 1 and a {HASH_BYTES}-byte hash (or 0 and GENESIS)")

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash.hex()}"

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """Read ``"<seq>:<hex hash>"`` (what ``str()`` writes); ``ValueError`` if malformed."""
        seq, sep, digest = text.strip().partition(":")
        try:
            return cls(int(seq), bytes.fromhex(digest))
        except ValueError:
            pass
        raise ValueError(f"an audit anchor looks like '<seq>:<{HASH_BYTES * 2} hex digits>', "
                         f"not {text!r}")


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome: how far the chain verified and, if it broke, the first broken seq and why."""

    verified: int                 # entries that verified, from seq 1
    last_seq: int                 # seq of the last verified entry (0: none)
    last_hash: bytes              # its hash (GENESIS: none)
    broken_seq: int | None = None
    problem: Problem | None = None
    detail: str | None = None
    anchor_checked: Anchor | None = None  # the anchor given, if it was reached and matched

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def anchor(self) -> Anchor:
        """The tip of the verified chain: record it to detect truncation later."""
        return Anchor(self.last_seq, self.last_hash)


class ChainVerifier:
    """Incremental verification; ``feed`` entries in seq order, then read ``report()``."""

    def __init__(self, anchor: Anchor | None = None) -> None:
        self._anchor = anchor
        self._verified = 0
        self._last_seq = 0
        self._last_hash = GENESIS
        self._broken: tuple[int, Problem, str] | None = None

    def feed(self, entry: Chained) -> bool:
        """Check the next entry; False once the chain is broken (later entries are ignored)."""
        if self._broken is not None:
            return False
        expected = self._last_seq + 1
        stored = bytes(entry.hash)
        if entry.seq > expected:
            return self._break(expected, Problem.MISSING,
                               f"entry {expected} is missing: the next entry is {entry.seq}")
        if entry.seq < expected:
            return self._break(entry.seq, Problem.OUT_OF_ORDER,
                               f"entry {entry.seq} came after entry {self._last_seq}")
        if bytes(entry.prev_hash) != self._last_hash:
            return self._break(entry.seq, Problem.BROKEN_LINK,
                               f"its prev_hash is not the hash of entry {self._last_seq} "
                               "(that entry was rewritten, or this one re-linked)")
        try:
            recomputed = hash_of(entry)
        except (TypeError, ValueError) as error:  # e.g. a naive time or a value JSON cannot hold
            return self._break(entry.seq, Problem.EDITED, f"its contents cannot be hashed ({error})")
        if recomputed != stored:
            return self._break(entry.seq, Problem.EDITED,
                               "its stored hash does not match its contents (the entry was edited)")
        if self._anchor is not None and entry.seq == self._anchor.seq and stored != self._anchor.hash:
            return self._break(entry.seq, Problem.ANCHOR_MISMATCH,
                               f"its hash is not the anchored {self._anchor.hash.hex()} "
                               "(history up to the anchor was rewritten)")
        self._verified += 1
        self._last_seq, self._last_hash = entry.seq, stored
        return True

    def report(self) -> VerifyReport:
        """The result so far; an anchor beyond the last entry counts as truncation."""
        broken, anchor = self._broken, self._anchor
        if broken is None and anchor is not None and anchor.seq > self._last_seq:
            broken = (self._last_seq + 1, Problem.TRUNCATED,
                      f"the log ends at entry {self._last_seq} but the anchor records entry "
                      f"{anchor.seq}: entries {self._last_seq + 1}..{anchor.seq} were deleted")
        if broken is not None:
            seq, problem, detail = broken
            return VerifyReport(self._verified, self._last_seq, self._last_hash, seq, problem, detail)
        # Not broken and seqs run 1..last without gaps, so an anchor at or below last was reached
        # and matched (feed() breaks otherwise).
        return VerifyReport(self._verified, self._last_seq, self._last_hash, anchor_checked=anchor)

    def _break(self, seq: int, problem: Problem, detail: str) -> bool:
        self._broken = (seq, problem, detail)
        return False


def verify(entries: Iterable[Chained], anchor: Anchor | None = None) -> VerifyReport:
    """Verify entries given in seq order from the first; stops at the first problem."""
    verifier = ChainVerifier(anchor)
    for entry in entries:
        if not verifier.feed(entry):
            break
    return verifier.report()


def format_report(report: VerifyReport) -> str:
    """A few lines for a terminal: the verdict, where and why it broke, the anchor to record."""
    span = f"seq 1..{report.last_seq}" if report.verified else "none"
    if not report.ok:
        return (f"audit log BROKEN at seq {report.broken_seq} ({report.problem}): {report.detail}\n"
                f"verified before the break: {report.verified} entries ({span})")
    lines = [f"audit log OK: {report.verified} entries verified ({span})"]
    if report.anchor_checked is not None:
        lines.append(f"anchor {report.anchor_checked.seq} matched")
    else:
        lines.append("no anchor given: deleting the newest entries would not be detected")
    lines.append(f"current anchor (record it outside the database): {report.anchor}")
    return "\n".join(lines)
