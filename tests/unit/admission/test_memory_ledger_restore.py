"""What a worker's start rebuilds from the usage ledger counts at once: a restored budget and a
restored window refuse what would go past their limits, and only those counters."""

from __future__ import annotations

import pytest

from inferenceops.admission.ledger import Admitted, Check, CheckKind, Refused
from inferenceops.admission.memory_ledger import MemoryLedger


def budget(amount: int, counter: str = "bud:team:t1:2026-12") -> Check:
    return Check(CheckKind.BUDGET, counter, 1000, amount, "monthly budget", ttl_s=3600.0)


def tokens(amount: int) -> Check:
    return Check(CheckKind.TOKENS, "tpm:team:t1", 1000, amount, "tokens per minute")


async def test_a_restored_budget_counts_what_the_ledger_says_was_spent() -> None:
    now = [10_000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    ledger.restore_spent("bud:team:t1:2026-12", 900, 3600.0)
    assert isinstance(await ledger.admit("r1", (budget(101),), 60.0), Refused)
    assert isinstance(await ledger.admit("r2", (budget(100),), 60.0), Admitted)
    ledger.restore_spent("bud:team:t1:2026-12", 10, 3600.0)  # never below what it holds
    assert isinstance(await ledger.admit("r3", (budget(1),), 60.0), Refused)
    assert isinstance(await ledger.admit("r4", (budget(999, "bud:team:t2:2026-12"),), 60.0), Admitted)


async def test_a_restored_window_counts_now_and_leaves_like_an_admission() -> None:
    now = [10_000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    ledger.restore_window(tokens(0), 950)
    assert isinstance(await ledger.admit("r1", (tokens(51),), 60.0), Refused)
    assert isinstance(await ledger.admit("r2", (tokens(50),), 60.0), Admitted)
    now[0] += 61.0  # the window has moved on: what was restored has left it
    assert isinstance(await ledger.admit("r3", (tokens(1000),), 60.0), Admitted)


def test_only_window_counters_can_be_restored_as_windows() -> None:
    with pytest.raises(ValueError, match="not a window counter"):
        MemoryLedger().restore_window(budget(0), 5)
