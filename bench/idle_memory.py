"""What one idle ``inferenceops serve`` worker holds in memory, next to a bare forwarder's.

The embedded default exactly as a newcomer starts it — ``inferenceops serve``
with no configuration, on a fresh data dir (SQLite, the simulated engines, the
admin API in the same process), one granian worker — is started, waited on
until ``/readyz`` answers 200 (the first snapshot has been built), left alone
for ``settle_s``, and then read from ``/proc``: granian's main process and the
worker separately, because the figure that matters is per worker (a second
worker costs another one).

For each process: ``VmRSS`` (the headline number; with granian's fork start the
worker's RSS includes the pages it still shares with the main process), and
from ``smaps_rollup`` the PSS (shared pages split between the processes that
map them), USS (pages only this process has: what a further worker costs)
and the anonymous share. The bare forwarder is ``bench.reference`` over
aiohttp, the same kind of process with nothing of ours in it but the client
module.

``python -m bench.idle_memory`` prints the numbers (JSON).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench import procs

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def smaps(pid: int) -> dict[str, float]:
    """RSS, PSS, USS and anonymous memory of one process in MiB (from smaps_rollup)."""
    fields: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, _, rest = line.partition(":")
            value = rest.split()
            if value and value[0].isdigit():
                fields[name] = int(value[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    kb = 1024.0
    return {"rss_mb": round(fields.get("Rss", 0) / kb, 1),
            "pss_mb": round(fields.get("Pss", 0) / kb, 1),
            "uss_mb": round((fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / kb, 1),
            "anon_mb": round(fields.get("Anonymous", 0) / kb, 1)}


def _read(proc: procs.ManagedProcess) -> dict[str, Any]:
    workers = proc.workers()
    return {"main": {"pid": proc.pid, **smaps(proc.pid)},
            "workers": [{"pid": pid, **smaps(pid)} for pid in workers]}


def _clean_env() -> dict[str, str]:
    """This environment without any INFERENCEOPS_ setting: the embedded default, nothing else."""
    return {k: v for k, v in os.environ.items() if not k.startswith("INFERENCEOPS_")}


def measure(work: Path, settle_s: float = 3.0) -> dict[str, Any]:
    """Start the embedded default and a bare forwarder, read their idle memory, stop both."""
    data = work / "idle-data"
    shutil.rmtree(data, ignore_errors=True)
    gw_port, ref_port = procs.free_port(), procs.free_port()
    gateway = procs.ManagedProcess(
        "idle-gateway",
        [sys.executable, "-m", "inferenceops", "serve", "--host", HOST, "--port", str(gw_port),
         "--data-dir", str(data), "--workers", "1"],
        work / "idle-gateway.log", f"http://{HOST}:{gw_port}/readyz")
    reference = procs.ManagedProcess(
        "idle-reference",
        [sys.executable, "-m", "bench.reference", "--port", str(ref_port),
         "--upstream", f"http://{HOST}:9", "--client", "aiohttp"],
        work / "idle-reference.log", f"http://{HOST}:{ref_port}/health")
    out: dict[str, Any] = {"settle_s": settle_s,
                           "what": "inferenceops serve, embedded default, fresh data dir, "
                                   "1 worker, idle after /readyz"}
    try:
        env = _clean_env()
        gateway.env, reference.env = env, env
        gateway.start(ROOT)
        reference.start(ROOT)
        out["gateway_ready_s"] = round(gateway.wait_ready(timeout_s=60.0), 2)
        reference.wait_ready()
        time.sleep(settle_s)
        out["gateway"] = _read(gateway)
        out["reference_aiohttp"] = _read(reference)
    finally:
        reference.stop()
        gateway.stop()
        shutil.rmtree(data, ignore_errors=True)
    workers = out["gateway"]["workers"]
    out["worker_rss_mb"] = max(w["rss_mb"] for w in workers) if workers else None
    out["worker_uss_mb"] = max(w["uss_mb"] for w in workers) if workers else None
    ref_workers = out["reference_aiohttp"]["workers"]
    out["reference_worker_rss_mb"] = ref_workers[0]["rss_mb"] if ref_workers else None
    return out


def main() -> int:
    work = ROOT / "bench" / ".work"
    work.mkdir(parents=True, exist_ok=True)
    print(orjson.dumps(measure(work), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
