"""LoRA adapters in the simulator: which are known, and which occupy GPU slots.

Known adapters are those loaded through ``/v1/load_lora_adapter`` (or listed in
the profile); loading one is free. Running a request on an adapter needs it
*resident* in one of ``max_loras`` slots. Swapping a non-resident adapter in
costs ``lora_load_ms`` of engine time and evicts the least recently used
resident adapter that no running sequence is using; when every slot is in use,
the request waits. The scheduler owns the "in use" counts and the timing; this
module only keeps the sets and the LRU order.
"""

from __future__ import annotations

from collections import Counter, OrderedDict

__all__ = ["LoraSlots"]


class LoraSlots:
    """Known adapters and an LRU of resident ones."""

    __slots__ = ("max_loras", "known", "_resident")

    def __init__(self, max_loras: int, preloaded: tuple[str, ...] = ()) -> None:
        self.max_loras = max_loras
        self.known: dict[str, str] = {name: f"/simulated/{name}" for name in preloaded}
        self._resident: OrderedDict[str, None] = OrderedDict()

    def load(self, name: str, path: str) -> None:
        self.known[name] = path

    def unload(self, name: str) -> None:
        self.known.pop(name, None)
        self._resident.pop(name, None)

    def resident(self) -> list[str]:
        return list(self._resident)

    def can_run(self, name: str, in_use: Counter[str]) -> bool:
        """Whether a sequence on ``name`` could start now without waiting for a slot."""
        if name in self._resident or len(self._resident) < self.max_loras:
            return True
        return any(in_use[r] == 0 for r in self._resident)

    def acquire(self, name: str, in_use: Counter[str]) -> bool:
        """Make ``name`` resident; True when that needed a swap-in (which costs time).

        Call only after :meth:`can_run` returned True for the same ``in_use``.
        """
        if name in self._resident:
            self._resident.move_to_end(name)
            return False
        if len(self._resident) >= self.max_loras:
            victim = next(r for r in self._resident if in_use[r] == 0)
            del self._resident[victim]
        self._resident[name] = None
        return True
