"""The bootstrap admin key: from ``INFERENCEOPS_ADMIN_KEY`` or made once per data folder.

A generated key is written with mode 0600 to ``<data_dir>/bootstrap-admin.key``
(created exclusively, so several workers starting at once agree on one key)
and shown once, at the start that created it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_FILE = "bootstrap-admin.key"
KEY_PREFIX = "sk-io-"


def new_key() -> str:
    """A 256-bit random key with a recognisable prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def load_or_create_key(data_dir: Path) -> tuple[str, bool]:
    """The data folder's bootstrap key, and whether it was created just now."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
        if key:
            return key, False
        raise RuntimeError(f"{path} is empty; delete it to have a new key generated") from None
    key = new_key()
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    return key, True
