"""A pytest plugin for ``make mutation``: run a mutant's tests fastest first.

mutmut runs, for each mutant, the tests that reached its function, with ``-x``
(stop at the first failure), in no particular order. Most mutants are killed by
many of them, so starting with the fastest — by the durations mutmut measured in
its stats run (``mutants/mutmut-stats.json``) — kills them sooner; a survivor
still runs them all. Test files stay together (cheapest file first, then its
fastest tests), so module-scoped fixtures such as a migrated store are set up
once per file, as usual. Loaded only through ``[tool.mutmut] pytest_add_cli_args``;
outside a mutant run (no ``MUTANT_UNDER_TEST``) it changes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_durations: dict[str, float] | None = None


def _load() -> dict[str, float]:
    global _durations
    if _durations is None:
        try:  # mutmut runs the tests from inside mutants/, where it keeps its stats
            stats = json.loads(Path("mutmut-stats.json").read_text())
            _durations = {str(k): float(v) for k, v in stats.get("duration_by_test", {}).items()}
        except (OSError, ValueError):
            _durations = {}
    return _durations


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    durations = _load()
    if not durations:
        return
    per_file: dict[str, float] = {}
    for item in items:
        path = item.nodeid.partition("::")[0]
        per_file[path] = per_file.get(path, 0.0) + durations.get(item.nodeid, 0.0)
    items.sort(key=lambda item: (per_file[item.nodeid.partition("::")[0]],
                                 item.nodeid.partition("::")[0], durations.get(item.nodeid, 0.0)))
