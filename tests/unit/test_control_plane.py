"""The snapshot feed never labels an older catalog with a newer store revision."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferenceops import control_plane
from inferenceops.config import load_platform
from inferenceops.control_plane import SnapshotFeed
from inferenceops.platform import KeyHasher
from inferenceops.store import Database, repo, upgrade


async def test_a_change_committed_while_the_snapshot_is_built_is_served_or_rebuilt_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    await upgrade(url)
    writer = Database(url)
    feed = SnapshotFeed(url, load_platform(None, loopback_base_url="http://x"),
                        loopback_base_url="http://x")
    feed._db = Database(url)
    real = control_plane.build_identity_and_rules

    async def with_a_commit_landing_first(db: Database):  # type: ignore[no-untyped-def]
        async with writer.transaction() as tx:
            await repo.create_deployment(tx, {"name": "late", "engine": "simulator",
                                              "profile": "test-fast", "served_model": "l"})
            await repo.create_model(tx, {"name": "late", "deployment": "late"})
        return await real(db)

    monkeypatch.setattr(control_plane, "build_identity_and_rules", with_a_commit_landing_first)
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


async def test_the_first_start_is_audited_like_any_other_change(tmp_path: Path) -> None:
    """The bootstrap admin, their key, the demo team and its grants, and the embedded catalog."""
    from inferenceops.audit.verifier import verify
    from inferenceops.config import load_platform
    from inferenceops.control_plane import BOOTSTRAP_ACTOR, prepare_store

    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    platform = load_platform(None, loopback_base_url="http://127.0.0.1:1")
    hasher = KeyHasher(b"bootstrap-audit-test-platform-secret-32+bytes")
    prepared = await prepare_store(url, hasher, platform, admin_key=None, from_file=False)
    db = Database(url)
    try:
        async with db.read() as tx:
            entries = (await repo.list_audit(tx, limit=1000)).items
            keys = (await repo.list_api_keys(tx)).items
        assert verify(entries).ok  # chained like every other entry
    finally:
        await db.close()
    by_bootstrap = [(e.action, e.target_type) for e in entries if e.actor == BOOTSTRAP_ACTOR]
    assert by_bootstrap[:3] == [("user.create", "user"), ("key.create", "api_key"),
                                ("team.create", "team")]
    granted = {e.target_id.split("/", 1)[1] for e in entries if e.action == "grant.put"}
    assert granted == set(prepared.models)
    assert {e.action for e in entries if e.actor != BOOTSTRAP_ACTOR} >= {"deployment.create",
                                                                        "model.create"}
    assert keys[0].created_by == BOOTSTRAP_ACTOR
    assert all(b"digest" not in repr(e.after).encode() and prepared.new_admin_key not in repr(e.after)
               for e in entries)
