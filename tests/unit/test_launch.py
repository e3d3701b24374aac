"""``inferenceops.launch``: the lean process ``serve`` becomes, and what it passes on.

The real exec runs in every integration test that starts ``inferenceops serve``, and
``bench/idle_memory.py`` measures what it saves; these tests pin its parts in process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from typing import Any

import pytest

from inferenceops import launch


def test_interpreter_options_carry_warning_and_x_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "warnoptions", ["error", "ignore::DeprecationWarning"])
    monkeypatch.setattr(sys, "_xoptions", {"importtime": True, "faulthandler": True, "dev": "1"})
    assert launch.interpreter_options() == [
        "-Werror", "-Wignore::DeprecationWarning", "-Ximporttime", "-Xfaulthandler", "-Xdev=1"]


@pytest.mark.parametrize(("server", "method", "forks"), [
    ("granian", "fork", True), ("granian", "spawn", False), ("granian", "forkserver", False),
    ("uvicorn", "fork", False)])
def test_only_a_forking_granian_gets_a_preloaded_main_process(
        monkeypatch: pytest.MonkeyPatch, server: str, method: str, forks: bool) -> None:
    monkeypatch.setattr(launch.multiprocessing, "get_start_method", lambda: method)
    assert launch.forks_workers({"server": server}) is forks


def test_preload_runs_the_factory_module_s_preload_if_it_has_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    with_preload = types.ModuleType("fake_factory_with_preload")
    with_preload.preload = lambda: calls.append("preloaded")  # type: ignore[attr-defined]
    without = types.ModuleType("fake_factory_without")
    monkeypatch.setitem(sys.modules, with_preload.__name__, with_preload)
    monkeypatch.setitem(sys.modules, without.__name__, without)
    launch.preload("fake_factory_with_preload:create_app")
    launch.preload("fake_factory_without:create_app")
    assert calls == ["preloaded"]


def test_main_runs_the_server_with_the_json_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import inferenceops.serving

    ran: list[dict[str, Any]] = []
    preloaded: list[str] = []
    monkeypatch.setattr(inferenceops.serving, "run", lambda **options: ran.append(options))
    monkeypatch.setattr(launch, "preload", preloaded.append)
    monkeypatch.setattr(launch.multiprocessing, "get_start_method", lambda: "fork")
    options = {"factory": "inferenceops.app:create_app", "host": "127.0.0.1", "port": 1,
               "workers": 2, "server": "granian", "shutdown_timeout_s": 3.0,
               "log_level": "info", "access_log": False}
    assert launch.main([json.dumps(options)]) == 0
    assert ran == [options] and preloaded == ["inferenceops.app:create_app"]
    assert launch.main([json.dumps({**options, "server": "uvicorn"})]) == 0
    assert preloaded == ["inferenceops.app:create_app"]  # uvicorn: nothing preloaded


def test_main_without_its_argument_says_how_it_is_started() -> None:
    done = subprocess.run([sys.executable, "-m", "inferenceops.launch"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "started by `inferenceops serve`" in done.stderr


def test_exec_server_replaces_the_process_with_the_launcher(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(launch.os, "execv", lambda path, argv: seen.append((path, argv)))
    monkeypatch.setattr(sys, "warnoptions", ["error"])
    monkeypatch.setattr(sys, "_xoptions", {})
    launch.exec_server(factory="inferenceops.app:create_app", port=8080)
    [(path, argv)] = seen
    assert path == sys.executable
    assert argv[:4] == [sys.executable, "-Werror", "-m", "inferenceops.launch"]
    assert json.loads(argv[4]) == {"factory": "inferenceops.app:create_app", "port": 8080}
