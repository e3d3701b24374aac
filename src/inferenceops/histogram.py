"""A fixed-bucket histogram for ``/metrics`` series (the outbox's, the simulated engines'): no I/O, no
locks — one event loop owns each."""

from __future__ import annotations

from bisect import bisect_left


class Histogram:
    """Counts per bucket (``value <= bound``, the last bucket past every bound), sum and count.

    Cumulative counts, as Prometheus wants them, are computed when rendered.
    """

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram bounds must be increasing")
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` for every bucket, ``+Inf`` last."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else f"{bound:g}", running))
        return out
