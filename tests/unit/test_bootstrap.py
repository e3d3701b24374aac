"""The bootstrap key is made once per data folder, private, and then reused."""

from __future__ import annotations

import stat
from pathlib import Path

from inferenceops.bootstrap import KEY_FILE, SECRET_FILE, load_or_create_key, load_or_create_secret


def test_key_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    key, created = load_or_create_key(tmp_path / "data")
    assert created and key.startswith("sk-io-") and len(key) >= 40
    mode = stat.S_IMODE((tmp_path / "data" / KEY_FILE).stat().st_mode)
    assert mode == 0o600
    again, created_again = load_or_create_key(tmp_path / "data")
    assert (again, created_again) == (key, False)


def test_each_data_folder_gets_its_own_key(tmp_path: Path) -> None:
    assert load_or_create_key(tmp_path / "a")[0] != load_or_create_key(tmp_path / "b")[0]


def test_platform_secret_is_made_once_private_and_long(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path)
    assert len(secret) >= 48
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600
    assert load_or_create_secret(tmp_path) == secret


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(4) as pool:
        keys = list(pool.map(load_or_create_key, [tmp_path] * 8))
    assert len({k for k, _ in keys}) == 1
    assert sum(created for _, created in keys) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE]
