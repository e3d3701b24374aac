"""A clock the test sets by hand, for code that takes a ``clock`` callable (monotonic seconds)."""

from __future__ import annotations


class Clock:
    """``clock()`` is ``clock.now``; move it with ``clock.now += seconds``."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
