"""`inferenceops audit verify` and `inferenceops db upgrade` against a real SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

from inferenceops.store import Database, repo, upgrade


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"INFERENCEOPS_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "inferenceops", *args], env=env,
                          capture_output=True, text=True, timeout=60)


async def _three_entries(url: str) -> None:
    db = Database(url)
    try:
        for i in range(3):
            async with db.transaction() as tx:
                await repo.append_audit(tx, actor="test", action="team.create",
                                        target_type="team", target_id=f"team_{i}", after={"i": i})
    finally:
        await db.close()


def test_upgrade_then_verify_passes_and_an_edit_is_caught(tmp_path: Path) -> None:
    done = cli(tmp_path, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert "is at schema" in done.stdout
    url = f"sqlite+aiosqlite:///{(tmp_path / 'inferenceops.db').resolve()}"
    asyncio.run(upgrade(url))  # idempotent
    asyncio.run(_three_entries(url))

    ok = cli(tmp_path, "audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "3 entries verified" in ok.stdout

    with sqlite3.connect(tmp_path / "inferenceops.db") as conn:
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    broken = cli(tmp_path, "audit", "verify")
    assert broken.returncode == 1
    assert "BROKEN at seq 2" in broken.stdout


def test_bad_anchor_is_a_usage_error(tmp_path: Path) -> None:
    done = cli(tmp_path, "audit", "verify", "--anchor", "not-an-anchor")
    assert done.returncode == 2
    assert "--anchor" in done.stderr
