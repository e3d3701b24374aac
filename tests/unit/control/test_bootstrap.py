"""First start: the store is bootstrapped and every step of it is in the audit log."""

from __future__ import annotations

from pathlib import Path

from inferenceops.platform import KeyHasher
from inferenceops.store import Database, repo


async def test_the_first_start_is_audited_like_any_other_change(tmp_path: Path) -> None:
    """The bootstrap admin, their key, the demo team and its grants, and the embedded catalog."""
    from inferenceops.audit.verifier import verify
    from inferenceops.config.spec import load_platform
    from inferenceops.control.bootstrap import BOOTSTRAP_ACTOR, prepare_store

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
