"""The deployment gate's CPU cost per acquire+release, on the fast path and on the queued path.

``python -m bench.fair_queue`` measures, on the stdlib asyncio loop and on uvloop
(the serving loop), CPU time (``time.process_time``) per acquire+release pair,
median of several rounds:

- fast path: a free slot, nobody waiting — what nearly every request pays;
- queued path: every acquire waits and is woken by a release. Workers hold
  their slot across one ``await asyncio.sleep(0)`` so others queue behind them;
  two shapes: 2 workers on capacity 1 (one team), and 256 workers on capacity 8
  (64 teams, both priorities). The same harness with only the ``sleep(0)``
  (no gate) is measured too: gate cost = queued − harness;
- references: ``asyncio.Semaphore`` in the same harnesses (a bare limit: no
  priority, no fairness, no maximum wait) and one ``loop.call_at`` + ``cancel``
  (what a per-waiter deadline timer would add; the gate uses one timer per class).

Results: bench/results/fair_queue-latest.{json,md} and a dated copy.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from inferenceops.admission.fair_queue import DeploymentGate
from inferenceops.platform.priority import Priority

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FAST_OPS, QUEUED_OPS, ROUNDS = 200_000, 60_000, 7
WAITS = {Priority.INTERACTIVE: 60.0, Priority.BACKGROUND: 60.0}


def gate(capacity: int) -> DeploymentGate:
    return DeploymentGate("bench", capacity, max_queue=100_000, max_wait_s=WAITS)


async def fast_gate() -> float:
    g = gate(4)
    acquire, release, hi = g.acquire, g.release, Priority.INTERACTIVE
    started = time.process_time()
    for _ in range(FAST_OPS):
        await acquire("team", 1.0, hi)
        release()
    took = time.process_time() - started
    assert g.stats().admitted_after_wait[hi] == 0
    return took / FAST_OPS


async def fast_semaphore() -> float:
    sem = asyncio.Semaphore(4)
    started = time.process_time()
    for _ in range(FAST_OPS):
        await sem.acquire()
        sem.release()
    return (time.process_time() - started) / FAST_OPS


async def call_at_cancel() -> float:
    loop = asyncio.get_running_loop()
    when = loop.time() + 3600

    def noop() -> None:
        pass

    started = time.process_time()
    for _ in range(FAST_OPS):
        loop.call_at(when, noop).cancel()
    took = time.process_time() - started
    await asyncio.sleep(0)
    return took / FAST_OPS


async def harness(workers: int, body: Callable[[int], Awaitable[None]]) -> float:
    per_worker = QUEUED_OPS // workers
    started = time.process_time()
    await asyncio.gather(*(body(i) for i in range(workers)))
    return (time.process_time() - started) / (per_worker * workers)


def queued_gate(workers: int, capacity: int, teams: int) -> Callable[[], Awaitable[float]]:
    async def run() -> float:
        g = gate(capacity)
        per_worker = QUEUED_OPS // workers

        async def body(i: int) -> None:
            team, prio = f"team{i % teams}", Priority(i % 2) if teams > 1 else Priority.INTERACTIVE
            for _ in range(per_worker):
                await g.acquire(team, 1.0 + i % 3, prio)
                await asyncio.sleep(0)
                g.release()

        took = await harness(workers, body)
        s = g.stats()
        queued = sum(s.admitted_after_wait.values()) / sum(s.admitted.values())
        assert queued > 0.99, queued  # the shape really exercises the queued path
        return took

    return run


def queued_semaphore(workers: int, capacity: int) -> Callable[[], Awaitable[float]]:
    async def run() -> float:
        sem = asyncio.Semaphore(capacity)
        per_worker = QUEUED_OPS // workers

        async def body(i: int) -> None:
            for _ in range(per_worker):
                await sem.acquire()
                await asyncio.sleep(0)
                sem.release()

        return await harness(workers, body)

    return run


def bare_harness(workers: int) -> Callable[[], Awaitable[float]]:
    async def run() -> float:
        per_worker = QUEUED_OPS // workers

        async def body(i: int) -> None:
            for _ in range(per_worker):
                await asyncio.sleep(0)

        return await harness(workers, body)

    return run


CASES: dict[str, Callable[[], Awaitable[float]]] = {
    "fast_gate": fast_gate,
    "fast_semaphore": fast_semaphore,
    "call_at_cancel": call_at_cancel,
    "queued_gate_2w_cap1": queued_gate(2, 1, 1),
    "queued_semaphore_2w_cap1": queued_semaphore(2, 1),
    "harness_2w": bare_harness(2),
    "queued_gate_256w_cap8_64teams": queued_gate(256, 8, 64),
    "queued_semaphore_256w_cap8": queued_semaphore(256, 8),
    "harness_256w": bare_harness(256),
}


async def measure_all() -> dict[str, float]:
    out = {}
    for name, case in CASES.items():
        await case()  # warm-up
        out[name] = round(statistics.median([await case() for _ in range(ROUNDS)]) * 1e6, 3)
    return out


def main() -> None:
    results = {"asyncio": asyncio.run(measure_all()), "uvloop": uvloop.run(measure_all())}
    write(results)


def write(results: dict[str, dict[str, float]]) -> None:
    stamp = datetime.now(UTC)
    doc: dict[str, Any] = {
        "timestamp": stamp.isoformat(timespec="seconds"), "nproc": os.cpu_count(),
        "python": platform.python_version(), "uvloop": uvloop.__version__,
        "unit": "CPU µs per acquire+release (median of rounds)", "rounds": ROUNDS,
        "fast_ops": FAST_OPS, "queued_ops": QUEUED_OPS, "results": results}

    def row(label: str, key: str, minus: str | None = None) -> str:
        cells = []
        for loop in ("uvloop", "asyncio"):
            r = results[loop]
            cells.append(f"{r[key] - r[minus]:.2f}" if minus else f"{r[key]:.2f}")
        return f"| {label} | " + " | ".join(cells) + " |"

    rows = ["# Deployment gate: CPU per acquire+release", "",
            "| case | uvloop µs | asyncio µs |", "|---|---:|---:|",
            row("fast path (slot free, nobody waiting)", "fast_gate"),
            row("  reference: asyncio.Semaphore, free", "fast_semaphore"),
            row("queued, 2 workers, capacity 1, 1 team (incl. task switch)", "queued_gate_2w_cap1"),
            row("  gate only (minus bare harness)", "queued_gate_2w_cap1", "harness_2w"),
            row("  reference: asyncio.Semaphore, same harness", "queued_semaphore_2w_cap1"),
            row("queued, 256 workers, capacity 8, 64 teams, 2 priorities", "queued_gate_256w_cap8_64teams"),
            row("  gate only (minus bare harness)", "queued_gate_256w_cap8_64teams", "harness_256w"),
            row("  reference: asyncio.Semaphore, same harness", "queued_semaphore_256w_cap8"),
            row("reference: one loop.call_at + cancel (per-waiter timer)", "call_at_cancel"),
            "", f"CPU time (process_time), median of {ROUNDS} rounds; fast path {FAST_OPS:,} pairs a "
            f"round, queued {QUEUED_OPS:,}. Measured {doc['timestamp']} on {doc['nproc']} cores, "
            f"Python {doc['python']}, uvloop {doc['uvloop']}."]
    md = "\n".join(rows) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in ("fair_queue-latest", f"fair_queue-{stamp:%Y%m%d-%H%M}"):
        (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        (RESULTS / f"{name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
