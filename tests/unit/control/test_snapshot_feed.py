"""The snapshot feed never labels an older catalog with a newer store revision."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferenceops.config.spec import load_platform
from inferenceops.control import snapshot_feed
from inferenceops.control.snapshot_feed import SnapshotFeed
from inferenceops.store import Database, repo, upgrade


async def test_a_change_committed_while_the_snapshot_is_built_is_served_or_rebuilt_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    await upgrade(url)
    writer = Database(url)
    feed = SnapshotFeed(url, load_platform(None, loopback_base_url="http://x"),
                        loopback_base_url="http://x")
    feed._db = Database(url)
    real = snapshot_feed.build_identity_and_rules

    async def with_a_commit_landing_first(db: Database):  # type: ignore[no-untyped-def]
        async with writer.transaction() as tx:
            await repo.create_deployment(tx, {"name": "late", "engine": "simulator",
                                              "profile": "test-fast", "served_model": "l"})
            await repo.create_model(tx, {"name": "late", "deployment": "late"})
        return await real(db)

    monkeypatch.setattr(snapshot_feed, "build_identity_and_rules", with_a_commit_landing_first)
    try:
        _, snapshot = await feed._build()
        async with writer.read() as tx:
            now = await repo.revision(tx)
    finally:
        await feed._db.close()
        await writer.close()
    # Either the snapshot serves the change already, or it carries an older revision, so the
    # next poll rebuilds it; never the newest revision with the change missing.
    assert snapshot.catalog.model("late") is not None or snapshot.identity.revision < now
