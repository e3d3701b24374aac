"""Whether a team's request and response bodies may be kept, and for how long. Pure data.

Three modes, chosen per team by a platform admin (the platform file or the admin API):

* ``none`` — the default: no body is ever stored. Logs keep no prompt either (an engine
  error quoting the request is logged with the prompt cut out).
* ``store`` — the team opted in: each request's body and its answer are stored *redacted*
  (every built-in PII and secret entity replaced by its ``[ENTITY]`` placeholder) for
  ``days`` days, then deleted by the retention sweep; auditors export them for a review.
* ``zero`` — zero retention: no body is written anywhere, not even what an engine says
  when it fails (its error detail is not logged at all), and the team cannot upload
  files (a batch input file is a body at rest).

Where the platform file and the store both set a team's retention, the stricter one
applies (``stricter``): zero over none over store, and of two ``store`` the fewer days.
"""

from __future__ import annotations

from dataclasses import dataclass

NONE_MODE = "none"
STORE = "store"
ZERO = "zero"
MODES = (NONE_MODE, STORE, ZERO)
#: Strictest first: the order ``stricter`` goes by.
_RANK = {ZERO: 0, NONE_MODE: 1, STORE: 2}
MAX_DAYS = 3650
#: Each side of a kept body (the request; the answer) is cut at this size by default.
RETAINED_BODY_MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Retention:
    """A team's body retention: a mode and, for ``store`` only, the days bodies are kept."""

    mode: str = NONE_MODE
    days: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in _RANK:
            raise ValueError(f"retention must be one of {', '.join(MODES)}, not {self.mode!r}")
        if (self.mode == STORE) != (self.days is not None):
            raise ValueError("retention_days is set exactly when retention is 'store'")
        if self.days is not None and not 1 <= self.days <= MAX_DAYS:
            raise ValueError(f"retention_days must be 1 to {MAX_DAYS}, not {self.days}")

    @property
    def stores(self) -> bool:
        return self.mode == STORE

    @property
    def zero(self) -> bool:
        return self.mode == ZERO


DEFAULT = Retention()


def stricter(a: Retention, b: Retention) -> Retention:
    """The retention that keeps less: see the module doc."""
    if a.mode != b.mode:
        return a if _RANK[a.mode] < _RANK[b.mode] else b
    if a.days is not None and b.days is not None and b.days < a.days:
        return b
    return a
