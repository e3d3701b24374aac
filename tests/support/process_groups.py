"""Server processes started by tests, each in its own process group: killed whole, and never left
behind when the test run ends (whatever way it ends, short of a SIGKILL of pytest itself)."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess

LIVE: set[subprocess.Popen[bytes]] = set()


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(LIVE):
        kill_group(proc)
        with contextlib.suppress(Exception):
            proc.wait(5)
