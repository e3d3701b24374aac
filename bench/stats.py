"""Small order statistics, kept here so every number in the report is computed one way.

Percentiles use the nearest-rank method on sorted samples: no interpolation,
so a p99 is always a latency that was actually observed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of unsorted ``samples``."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ms(seconds: float) -> float:
    """Seconds → milliseconds rounded to the microsecond, for the report."""
    return round(seconds * 1000.0, 3)
