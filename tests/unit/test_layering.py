"""Layers point one way: the data plane never reaches the store, the admin side or their libraries.

Reads every module's imports (static, via ast) so a violation fails here rather
than as a slow request in production. ``platform`` imports nothing of ours.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "inferenceops"
HOT_PATH = ("gateway", "admission", "metering", "routing", "engines", "platform")
FORBIDDEN = ("inferenceops.store", "inferenceops.admin", "inferenceops.audit",
             "inferenceops.control_plane", "sqlalchemy", "alembic", "asyncpg", "aiosqlite",
             "fastapi", "aiohttp")


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", HOT_PATH)
def test_hot_path_packages_never_import_the_store_or_admin(package: str) -> None:
    offenders = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in (PACKAGE / package).rglob("*.py")
        for name in imports_of(path)
        if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN)
    }
    assert not offenders


def test_platform_imports_nothing_of_ours_but_itself() -> None:
    offenders = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in (PACKAGE / "platform").rglob("*.py")
        for name in imports_of(path)
        if name.startswith("inferenceops") and not name.startswith("inferenceops.platform")
    }
    assert not offenders
