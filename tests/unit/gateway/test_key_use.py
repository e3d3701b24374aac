"""Key-use notes: deduplicated, bounded, drained whole."""

from __future__ import annotations

from inferenceops.gateway.key_use import KeyUseRecorder


def test_notes_are_deduplicated_and_drained() -> None:
    uses = KeyUseRecorder()
    for key in ("a", "b", "a"):
        uses.note(key)
    assert uses.drain() == {"a", "b"}
    assert uses.drain() == set()


def test_past_the_limit_new_keys_are_counted_not_kept() -> None:
    uses = KeyUseRecorder(limit=2)
    for key in ("a", "b", "c", "a", "d"):
        uses.note(key)
    assert uses.drain() == {"a", "b"}
    assert uses.dropped == 2
    uses.note("c")
    assert uses.drain() == {"c"}
