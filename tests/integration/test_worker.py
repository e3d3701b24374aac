"""``inferenceops worker``: the same process container as ``serve``, without the HTTP server.

It runs its services on the store ``serve`` prepared, says which when it is ready, and on
SIGTERM stops them in reverse order and exits 0; its outbox writer records what is queued.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.integration._harness import SpawnGateway, gateway_env

pytestmark = pytest.mark.integration


def _wait_for(proc: subprocess.Popen[bytes], log: str, text: str, deadline_s: float) -> str:
    end = time.monotonic() + deadline_s
    with open(log, encoding="utf-8", errors="replace") as out:
        seen = ""
        while text not in seen:
            seen += out.read()
            assert proc.poll() is None, f"worker exited with {proc.returncode}:\n{seen}"
            assert time.monotonic() < end, f"no {text!r} after {deadline_s}s:\n{seen}"
            time.sleep(0.05)
    return seen


def test_the_worker_runs_the_services_and_stops_cleanly(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway(name="serving")  # prepares the store (migrations, bootstrap)
    log = str(gw.log_path.parent / "worker.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inferenceops", "worker", "--data-dir", str(gw.data_dir)],
            env=gateway_env({"INFERENCEOPS_LOG_LEVEL": "debug"}), stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        seen = _wait_for(proc, log, ", files-expiry\n", 30)  # the last service it starts
        ready = seen.partition("worker ready: ")[2].partition("\n")[0].split(", ")
        assert ready[0] == "outbox-writer" and "snapshot-feed" in ready
        assert {"batch-executor", "retention-sweep", "usage-rollups"} <= set(ready)
        assert "snapshot built" in seen and "admin-api" not in seen
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    with open(log, encoding="utf-8", errors="replace") as out:
        text = out.read()
    assert "worker stopping" in text and "Traceback" not in text
