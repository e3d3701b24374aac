"""Turning the foundation benchmark's raw blocks into its results, and the machine it ran on.

Medians over alternating blocks (so drifts in machine load hit both sides
alike), pooled percentiles, CPU per request from whole-run totals. Used by
``bench.run``; no processes are started here.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import client
from bench.stats import median, ms, percentile

ROOT = Path(__file__).resolve().parent.parent


def summarise_sequential(per_block: list[dict[str, client.Samples]], sides: tuple[str, ...],
                          stream: bool, cpu: dict[str, float]) -> dict[str, Any]:
    """Per-block p50/p99 for each side, then the median over blocks of the differences.

    ``added_*`` is gateway − direct; with --reference, ``reference_added_*`` is
    reference − direct.
    """
    def values(s: client.Samples) -> list[float]:
        return s.first_chunks if stream else s.latencies

    added = {"gateway": "added", "reference": "reference_added"}
    blocks = []
    for block in per_block:
        row: dict[str, float] = {}
        for side in sides:
            row[f"{side}_p50_ms"] = ms(percentile(values(block[side]), 50))
            row[f"{side}_p99_ms"] = ms(percentile(values(block[side]), 99))
            row[f"{side}_n"] = len(values(block[side]))
        for side in sides[1:]:
            for pct in ("p50", "p99"):
                row[f"{added[side]}_{pct}_ms"] = round(
                    row[f"{side}_{pct}_ms"] - row[f"direct_{pct}_ms"], 3)
        blocks.append(row)
    pooled = {side: [v for b in per_block for v in values(b[side])] for side in sides}
    overheads = [v for b in per_block for v in b["gateway"].overheads_ms]
    out: dict[str, Any] = {
        "metric": "time to first SSE chunk" if stream else "full response latency",
        "requests_per_side": len(pooled["gateway"]),
        "overhead_header_median_ms": round(median(overheads), 3) if overheads else None,
    }
    for side in sides[1:]:
        for pct in ("p50", "p99"):
            key = f"{added[side]}_{pct}_ms"
            out[key] = round(median([b[key] for b in blocks]), 3)
    for side in sides:
        out[f"{side}_p50_ms"] = ms(percentile(pooled[side], 50))
        out[f"{side}_p99_ms"] = ms(percentile(pooled[side], 99))
    if stream:
        full = {side: [v for b in per_block for v in b[side].latencies] for side in sides}
        out["full_stream_p50_ms"] = {side: ms(percentile(full[side], 50)) for side in sides}
    out["blocks"] = blocks
    out["cpu"] = cpu
    return out


def summarise_wrk(side: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over blocks for rate and p99; CPU per request from totals over all blocks.

    ``cpu_ms_per_request`` is the side's own server: the upstream for direct, the
    gateway for gateway, the reference proxy for reference.
    """
    requests = sum(b["requests"] for b in blocks)
    wall = sum(b["wall_s"] for b in blocks)
    ncpu = os.cpu_count() or 1

    def total(key: str) -> float:
        return sum(b.get(key, 0.0) for b in blocks)

    def share(key: str) -> float:
        return round(100.0 * total(key) / (wall * ncpu), 1)

    out: dict[str, Any] = {
        "rps_median": round(median([b["rps"] for b in blocks]), 1),
        "p50_ms_median": round(median([b["p50_ms"] for b in blocks]), 3),
        "p99_ms_median": round(median([b["p99_ms"] for b in blocks]), 3),
        "requests": requests,
        "cpu_ms_per_request": round(1000.0 * total("server_cpu_s") / requests, 4),
        "upstream_cpu_ms_per_request": round(1000.0 * total("upstream_cpu_s") / requests, 4),
        "wrk_cpu_ms_per_request": round(1000.0 * total("loadgen_cpu_s") / requests, 4),
        "cpu_share_pct": share("server_cpu_s"),
        "upstream_cpu_share_pct": share("upstream_cpu_s"),
        "wrk_cpu_share_pct": share("loadgen_cpu_s"),
        "other_cpu_share_pct": share("other_cpu_s"),
        "kernel_irq_cpu_share_pct": share("kernel_irq_cpu_s"),
        "steal_cpu_share_pct": share("steal_cpu_s"),
    }
    if side == "gateway":
        threads: dict[str, float] = {}
        for b in blocks:
            for name, secs in b["gateway_threads_cpu_s"].items():
                threads[name] = threads.get(name, 0.0) + secs
        out["gateway_worker_thread_cpu_ms_per_request"] = {
            name: round(1000.0 * secs / requests, 4) for name, secs in sorted(threads.items())}
    out["blocks"] = blocks
    return out


def machine_info() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu_model = next((line.split(":", 1)[1].strip()
                      for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "unknown")
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    wrk_version = wrk_version.split("\n")[0]
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {name: version(name) for name in
                     ("inferenceops", "granian", "httptools", "aiohttp", "orjson", "uvloop")},
        "wrk": wrk_version.strip(),
        "git_commit": git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(git("status", "--porcelain", "--", "src")),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }
