"""The platform secret kept in the data folder when none is configured.

Production sets ``INFERENCEOPS_SECRET_KEY`` (every replica must share it).
Otherwise it is generated once into the data folder with mode 0600 and
published atomically, so that several processes starting at once agree on one
value. (API keys themselves are never written anywhere: only their keyed
hashes, in the store.)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from inferenceops.settings import Settings

SECRET_FILE = "platform-secret.key"


def platform_secret(settings: Settings) -> bytes:
    """``INFERENCEOPS_SECRET_KEY`` when set, else the data folder's (made once)."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    return load_or_create_secret(settings.data_dir)


def load_or_create_secret(data_dir: Path) -> bytes:
    """The data folder's platform secret (keys the API-key hashes)."""
    value, _ = _load_or_create(data_dir / SECRET_FILE, lambda: secrets.token_urlsafe(48))
    return value.encode()


def _load_or_create(path: Path, make: Callable[[], str]) -> tuple[str, bool]:
    """Read ``path``, or publish a new value there atomically (write aside, then link)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        value = make()
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(value + "\n")
        try:
            os.link(tmp, path)  # atomic; fails if another process published first
            return value, True
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    value = path.read_text(encoding="ascii").strip()
    if not value:
        raise RuntimeError(f"{path} is empty; delete it to have a new one generated")
    return value, False
