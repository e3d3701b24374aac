"""Which API keys were used lately: noted on the hot path, written to the store elsewhere.

The data plane only adds a key id to a set (no I/O, no await); a background
writer drains the set every few seconds and records ``last_used_at`` in bulk.
The set is bounded: past ``limit`` distinct keys between drains, further new
keys are counted in ``dropped`` (visible, never silent) and picked up on
their next use after a drain.
"""

from __future__ import annotations


class KeyUseRecorder:
    __slots__ = ("_ids", "limit", "dropped")

    def __init__(self, limit: int = 100_000) -> None:
        self._ids: set[str] = set()
        self.limit = limit
        self.dropped = 0

    def note(self, key_id: str) -> None:
        ids = self._ids
        if key_id in ids:
            return
        if len(ids) < self.limit:
            ids.add(key_id)
        else:
            self.dropped += 1

    def drain(self) -> set[str]:
        ids, self._ids = self._ids, set()
        return ids
