"""The ``usage-rollups`` service's settings and loop: what it refuses, and that a store failure
is a logged round, not a crash (the rollup arithmetic itself: ``tests/unit/store``)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import ValidationError

from inferenceops.control.usage_rollup import RoundResult, UsageRollups
from inferenceops.settings import Settings
from inferenceops.store.errors import StoreUnavailable


def test_settings_default_and_refuse_what_cannot_work(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert (settings.usage_rollup_interval_s, settings.usage_retention_days) == (60.0, 90)
    monkeypatch.setenv("INFERENCEOPS_USAGE_ROLLUP_INTERVAL_S", "0.5")
    monkeypatch.setenv("INFERENCEOPS_USAGE_RETENTION_DAYS", "0")  # keep raw records forever
    assert (Settings().usage_rollup_interval_s, Settings().usage_retention_days) == (0.5, 0)
    for name, value, words in (("usage_rollup_interval_s", 0, "greater than 0"),
                               ("usage_rollup_interval_s", 3601, "less than or equal to 3600"),
                               ("usage_retention_days", -1, "greater than or equal to 0"),
                               ("usage_retention_days", "ninety", "valid integer")):
        with pytest.raises(ValidationError, match=words):
            Settings(**{name: value})


async def test_a_failing_round_is_logged_and_the_next_one_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    service = UsageRollups("sqlite+aiosqlite:///:memory:", interval_s=0.001, retention_days=0)
    second = asyncio.Event()
    rounds = 0

    async def round_once(**_: object) -> RoundResult:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise StoreUnavailable("the database is unavailable")
        second.set()
        return RoundResult()

    service.run_once = round_once  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="inferenceops.rollups"):
        task = asyncio.create_task(service.run())
        await asyncio.wait_for(second.wait(), 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert rounds >= 2  # the failure did not end the loop
    assert "usage rollup failed" in caplog.text and "unavailable" in caplog.text
    await service.stop()
