"""Service classes of requests: interactive work first, background (and batch) work after."""

from __future__ import annotations

import enum


class Priority(enum.IntEnum):
    """Service classes, lower value first. Values must stay 0..n-1: the fair queue indexes lists by them."""

    INTERACTIVE = 0
    BACKGROUND = 1
