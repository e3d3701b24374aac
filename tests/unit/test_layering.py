"""Layers point one way: the data plane never reaches the store, the admin side or their libraries;
nothing reaches up into the composition root or the CLI; and no two parts import each other.

Reads every module's imports statically (ast: top-level, function-level and TYPE_CHECKING
imports alike), so a violation fails here rather than as a slow request or an import
cycle in production.

Units are the top-level packages and modules of ``inferenceops``, except two modules
that sit below the rest of their package: ``config.spec`` (the platform file's schema,
which the store converts to rows) and ``outbox.writer`` (the one part of the outbox
that writes to the store).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "inferenceops"
HOT_PATH = ("gateway", "pipeline", "admission", "metering", "routing", "engines", "platform",
            "outbox", "guardrails")
FORBIDDEN = ("inferenceops.store", "inferenceops.admin", "inferenceops.audit",
             "inferenceops.control", "inferenceops.cli", "inferenceops.config",
             "inferenceops.outbox.writer", "inferenceops.app", "sqlalchemy", "alembic", "asyncpg",
             "aiosqlite", "fastapi", "aiohttp", "typer")
#: unit → units it must never import (beyond "no cycles").
NEVER = {
    "pipeline": {"gateway"},
    "settings": {"admin", "app", "cli", "control", "store", "gateway", "pipeline"},
    "store": {"admin", "audit", "gateway", "pipeline", "cli", "control", "config", "app",
              "outbox.writer"},
    "admin": {"app", "cli", "gateway", "pipeline", "control"},
    "config.spec": {"store", "admin", "app", "cli", "control"},
    # Detectors are pure functions over text: the pipeline uses them, never the other way.
    "guardrails": {"gateway", "pipeline", "admission", "metering", "routing", "engines",
                   "control", "store"},
}
_SPLIT = ("config.spec", "outbox.writer")


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    rest = module.removeprefix("inferenceops.")
    for split in _SPLIT:
        if rest == split or rest.startswith(split + "."):
            return split
    return rest.split(".")[0] if rest != "inferenceops" else "(root)"


@cache
def graph() -> dict[str, set[str]]:
    """unit → the other units it imports."""
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        unit = unit_of(module_of(path))
        for name in imports_of(path):
            if name.startswith("inferenceops.") and unit_of(name) != unit:
                edges.setdefault(unit, set()).add(unit_of(name))
    return edges


def _offenders(package: str, banned: tuple[str, ...]) -> Iterator[str]:
    for path in (PACKAGE / package).rglob("*.py"):
        if module_of(path) == "inferenceops.outbox.writer":
            continue  # the outbox's writer is the one part meant to reach the store
        for name in imports_of(path):
            if any(name == b or name.startswith(b + ".") for b in banned):
                yield f"{path.relative_to(PACKAGE)}: {name}"


@pytest.mark.parametrize("package", HOT_PATH)
def test_hot_path_packages_never_import_the_store_admin_or_composition(package: str) -> None:
    assert not set(_offenders(package, FORBIDDEN))


def test_platform_imports_nothing_of_ours_but_itself() -> None:
    offenders = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in (PACKAGE / "platform").rglob("*.py")
        for name in imports_of(path)
        if name.startswith("inferenceops") and not name.startswith("inferenceops.platform")
    }
    assert not offenders


@pytest.mark.parametrize("unit", sorted(NEVER))
def test_each_layer_keeps_off_the_ones_above_it(unit: str) -> None:
    assert not graph().get(unit, set()) & NEVER[unit]


def test_only_the_entry_point_imports_the_cli() -> None:
    importers = {u for u, targets in graph().items() if "cli" in targets}
    assert importers <= {"__main__"}


def test_no_two_parts_import_each_other_even_through_others() -> None:
    edges = graph()
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str], on_path: set[str], done: set[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in on_path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, [*path, nxt], on_path | {nxt}, done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(edges):
        if start not in done:
            visit(start, [start], {start}, done)
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_the_graph_is_read_from_the_real_tree() -> None:
    """Guards the guard: the units and some known edges are where they should be."""
    edges = graph()
    assert {"gateway", "pipeline", "store", "admin", "config.spec", "outbox.writer"} <= set(edges)
    assert "pipeline" in edges["gateway"] and "store" in edges["outbox.writer"]
    assert "config.spec" in edges["store"]
