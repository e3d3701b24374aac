"""Identity at scale: snapshot build time, event-loop stalls, and auth CPU with 100k keys.

``python -m bench.identity`` (``make bench-identity``) fills a fresh store —
SQLite, and PostgreSQL when one answers at 127.0.0.1:5432 — with 100,000 live
keys (+1,000 revoked) for 1,000 teams, then measures, per backend:

- snapshot build: wall time of ``build_identity`` (the serving path: stream
  the rows, build the index), median of 3 runs;
- the longest the event loop was held meanwhile (a 1 ms ticker measures the
  gaps between its wake-ups);
- data-plane auth CPU per request with those 100,000 keys loaded, against the
  same with 1 key loaded (the baseline), for valid and unknown keys.

Targets (issue 3): build <= 2 s, no stall > 50 ms, auth <= 0.05 ms CPU.
Results: bench/results/identity-latest.{json,md} and a dated copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.bulk_identity import fill
from tests.support.postgres import Postgres, probe

from inferenceops.errors import AuthenticationFailed
from inferenceops.pipeline.auth import authenticate
from inferenceops.platform import ApiKey, Identity, KeyHasher, Principal
from inferenceops.store import Database, upgrade
from inferenceops.store.snapshot_builder import build_identity

ROOT = Path(__file__).resolve().parent.parent
WORK, RESULTS = ROOT / "bench" / ".work", ROOT / "bench" / "results"
TEAMS, KEYS, REVOKED = 1_000, 100_000, 1_000
HASHER = KeyHasher(b"bench-identity-platform-secret-32b+")


def secret(i: int) -> str:
    return f"sk-io-bench-{i:08}-padpadpadpadpadpadpadpadpad"


async def timed_build(db: Database) -> tuple[float, float, Identity]:
    """(seconds, longest loop stall in seconds, identity) for one snapshot build."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    identity = await build_identity(db)
    took = time.perf_counter() - started
    done.set()
    await task
    return took, max(gaps), identity


def auth_cpu_ms(identity: Identity, headers: list[bytes], rounds: int = 200_000) -> float:
    now = time.time()
    n = len(headers)
    started = time.process_time()
    for i in range(rounds):
        with contextlib.suppress(AuthenticationFailed):  # unknown keys are part of the mix
            authenticate(identity, HASHER, headers[i % n], now)
    return (time.process_time() - started) * 1000 / rounds


async def measure(url: str, backend: str) -> dict[str, Any]:
    await upgrade(url)
    db = Database(url)
    try:
        started = time.perf_counter()
        await fill(db, teams=TEAMS, keys=KEYS, revoked=REVOKED,
                   digest_of=lambda i: HASHER.digest(secret(i)))
        fill_s = time.perf_counter() - started
        builds = [await timed_build(db) for _ in range(3)]
    finally:
        await db.close()
    identity = builds[-1][2]
    assert len(identity) == KEYS, len(identity)
    valid = [b"Bearer " + secret(i).encode() for i in range(0, KEYS, 97)]
    unknown = [b"Bearer sk-io-unknown-%08d-padpadpadpadpadpad" % i for i in range(1000)]
    one = Identity([(HASHER.digest(secret(0)), ApiKey("k", "p", Principal("u"), "t",
                                                      frozenset({"inference"})))], {})
    return {
        "backend": backend, "keys": KEYS, "teams": TEAMS, "fill_s": round(fill_s, 2),
        "build_s_median": round(statistics.median(b[0] for b in builds), 3),
        "build_s_runs": [round(b[0], 3) for b in builds],
        "max_loop_stall_ms": round(max(b[1] for b in builds) * 1000, 1),
        "auth_cpu_ms_valid_100k": round(auth_cpu_ms(identity, valid), 5),
        "auth_cpu_ms_unknown_100k": round(auth_cpu_ms(identity, unknown), 5),
        "auth_cpu_ms_valid_1key": round(auth_cpu_ms(one, [valid[0]]), 5),
    }


async def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    results = []
    sqlite_file = WORK / "identity-bench.db"
    for path in WORK.glob("identity-bench.db*"):
        path.unlink()
    results.append(await measure(f"sqlite+aiosqlite:///{sqlite_file}", "sqlite"))
    dsn, reason = await probe()
    if dsn is None:
        print(f"PostgreSQL skipped: {reason}")
    else:
        pg = Postgres(dsn)
        name = await pg.create()
        try:
            results.append(await measure(pg.url(name), "postgresql"))
        finally:
            await pg.drop(name)
    write(results)


def write(results: list[dict[str, Any]]) -> None:
    stamp = datetime.now(UTC)
    doc = {"timestamp": stamp.isoformat(timespec="seconds"), "nproc": os.cpu_count(),
           "results": results}
    rows = ["# Identity at scale (100,000 keys, 1,000 teams)", "",
            "| backend | snapshot build (median of 3) | longest loop stall | auth CPU, valid key "
            "| auth CPU, unknown key | auth CPU with 1 key loaded |", "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        rows.append(f"| {r['backend']} | {r['build_s_median']:.2f} s | {r['max_loop_stall_ms']:.0f} ms "
                    f"| {r['auth_cpu_ms_valid_100k'] * 1000:.1f} µs | "
                    f"{r['auth_cpu_ms_unknown_100k'] * 1000:.1f} µs | "
                    f"{r['auth_cpu_ms_valid_1key'] * 1000:.1f} µs |")
    rows += ["", "Targets: build ≤ 2 s, no stall > 50 ms, auth ≤ 50 µs CPU per request. "
             f"Measured {doc['timestamp']} on {doc['nproc']} cores."]
    md = "\n".join(rows) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in ("identity-latest", f"identity-{stamp:%Y%m%d-%H%M}"):
        (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        (RESULTS / f"{name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    asyncio.run(main())
