"""The simulator's prefix cache: chained hashes of full prompt blocks in an LRU.

Like vLLM's automatic prefix caching, only *full* blocks are cached and block
``i``'s hash covers every token before it (``hash(prev_hash, block_i_tokens)``),
so a hit on block ``i`` implies hits on all earlier blocks. A lookup walks the
chain until the first miss. The simplification against vLLM: cached blocks live
in their own LRU with a fixed capacity instead of sharing the KV pool with
running sequences. Blocks of a prompt are touched last-to-first, so a prompt's
first blocks are the most recent and tails are evicted before the prefixes they
hang from (vLLM frees blocks in the same reverse order). Pure bookkeeping; the
scheduler decides what a hit is worth.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["PrefixCache", "block_hashes"]


def block_hashes(token_ids: list[int], block_size: int) -> list[int]:
    """Chained hashes of the full blocks of ``token_ids`` (a partial tail is ignored)."""
    hashes: list[int] = []
    prev = 0
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        # Tuples of ints hash deterministically (no PYTHONHASHSEED salt for ints).
        prev = hash((prev, *token_ids[start : start + block_size]))
        hashes.append(prev)
    return hashes


class PrefixCache:
    """An LRU set of block hashes holding at most ``capacity_blocks`` entries."""

    __slots__ = ("_capacity", "_blocks")

    def __init__(self, capacity_blocks: int) -> None:
        self._capacity = capacity_blocks
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def match(self, hashes: list[int]) -> int:
        """How many leading blocks of ``hashes`` are cached; hits become most recent."""
        blocks = self._blocks
        matched = 0
        for h in hashes:
            if h not in blocks:
                break
            matched += 1
        for h in reversed(hashes[:matched]):
            blocks.move_to_end(h)
        return matched

    def insert(self, hashes: list[int]) -> None:
        """Record ``hashes`` as cached, evicting least recently used blocks beyond capacity."""
        if self._capacity <= 0:
            return
        blocks = self._blocks
        for h in reversed(hashes):
            if h in blocks:
                blocks.move_to_end(h)
            else:
                blocks[h] = None
        while len(blocks) > self._capacity:
            blocks.popitem(last=False)
