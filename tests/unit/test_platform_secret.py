"""The platform secret is made once per data folder, private, shared by concurrent starts."""

from __future__ import annotations

import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from inferenceops.platform_secret import SECRET_FILE, load_or_create_secret


def test_platform_secret_is_made_once_private_and_long(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path)
    assert len(secret) >= 48
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600
    assert load_or_create_secret(tmp_path) == secret


def test_each_data_folder_gets_its_own_secret(tmp_path: Path) -> None:
    assert load_or_create_secret(tmp_path / "a") != load_or_create_secret(tmp_path / "b")


def test_concurrent_first_starts_agree_on_one_secret(tmp_path: Path) -> None:
    with ProcessPoolExecutor(4) as pool:
        secrets = list(pool.map(load_or_create_secret, [tmp_path] * 8))
    assert len(set(secrets)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [SECRET_FILE]
