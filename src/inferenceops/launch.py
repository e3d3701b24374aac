"""The process ``inferenceops serve`` becomes once the store is ready: the server and what it shares.

``serve`` validates the settings, migrates and bootstraps the store and prints
its banner — work that loads typer, Alembic and Mako — and then *replaces
itself* (``exec``: same process id, environment and standard streams) with
``python -m inferenceops.launch``. That fresh interpreter imports, when the
server forks its workers (granian, ``fork`` start), what every worker needs
(``preload``: the factory module's own ``preload()``), then runs the server.
The workers forked from it share those modules' pages instead of each loading
its own copy, and inherit nothing of the preparation; ``bench/idle_memory.py``
measures the result, ``tests/unit/test_idle_imports.py`` guards it.

``exec_server`` (the CLI's side) and ``main`` (this process's) share one JSON
argument: the keyword arguments of ``inferenceops.serving.run``. The settings
themselves travel in the environment, as before: the CLI has put its flags there,
and every worker reads ``Settings()`` from it. Where ``exec`` cannot keep the process
(not POSIX) or there is no interpreter to exec, ``exec_server`` runs the server in the
calling process instead.

Imports nothing of ours at module level; ``main`` imports ``serving`` (itself light).
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import sys
from typing import Any


def interpreter_options() -> list[str]:
    """The ``-W`` and ``-X`` options this interpreter was started with, to start the next alike."""
    options = [f"-W{option}" for option in sys.warnoptions]
    for name, value in sys._xoptions.items():
        options.append(f"-X{name}" if value is True else f"-X{name}={value}")
    return options


def exec_server(**options: Any) -> None:
    """Become ``python -m inferenceops.launch`` running ``serving.run(**options)`` (never returns)."""
    if os.name != "posix" or not sys.executable:  # pragma: no cover - exec would not keep the pid
        from inferenceops.serving import run

        run(**options)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, *interpreter_options(), "-m", "inferenceops.launch",
            json.dumps(options)]
    os.execv(sys.executable, argv)


def forks_workers(options: dict[str, Any]) -> bool:
    """Whether the server will fork its workers from this process (granian, ``fork`` start)."""
    return options.get("server") == "granian" and multiprocessing.get_start_method() == "fork"


def preload(factory: str) -> None:
    """Before forking: import the factory's module and run its ``preload()`` if it has one.

    Modules imported here are shared by every worker (copy-on-write) instead of loaded
    by each. (``gc.freeze()`` here was measured too, with collections forced in the
    worker: no difference in its private memory, so it is not done.)
    """
    module = importlib.import_module(factory.partition(":")[0])
    preload_module = getattr(module, "preload", None)
    if callable(preload_module):
        preload_module()


def main(argv: list[str]) -> int:
    from inferenceops.serving import run

    if len(argv) != 1:
        print("usage: python -m inferenceops.launch '<serving.run options as JSON>' "
              "(started by `inferenceops serve`)", file=sys.stderr)
        return 2
    options = json.loads(argv[0])
    if forks_workers(options):
        preload(options["factory"])
    run(**options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
