"""Shared by every test directory: how pytest-xdist hands out tests (``make test`` runs two
processes with ``--dist loadfile``: one file stays in one process, so its module fixtures —
a migrated store, a gateway — are built once).

The engine tier (``tests/engines``) is one unit: its package fixtures start two real vLLM
replicas, which two processes would each start (a minute or more each, and four vLLM
engines at once on a 2-core machine)."""

from __future__ import annotations

from typing import Any

ENGINES = "tests/engines/"


def pytest_xdist_make_scheduler(config: Any, log: Any) -> Any:
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class EnginesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return ENGINES if nodeid.startswith(ENGINES) else super()._split_scope(nodeid)

    return EnginesTogether(config, log)
