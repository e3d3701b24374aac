"""The bootstrap key is made once per data folder, private, and then reused."""

from __future__ import annotations

import stat
from pathlib import Path

from inferenceops.bootstrap import KEY_FILE, load_or_create_key


def test_key_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    key, created = load_or_create_key(tmp_path / "data")
    assert created and key.startswith("sk-io-") and len(key) >= 40
    mode = stat.S_IMODE((tmp_path / "data" / KEY_FILE).stat().st_mode)
    assert mode == 0o600
    again, created_again = load_or_create_key(tmp_path / "data")
    assert (again, created_again) == (key, False)


def test_each_data_folder_gets_its_own_key(tmp_path: Path) -> None:
    assert load_or_create_key(tmp_path / "a")[0] != load_or_create_key(tmp_path / "b")[0]
