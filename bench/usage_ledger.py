"""The usage ledger's write rate: usage records through the real outbox and writer into the store.

``python -m bench.usage_ledger`` migrates a fresh store — SQLite (a new file in
``bench/.work``, WAL as the store configures it) and PostgreSQL when one answers
at 127.0.0.1:5432 (a throwaway database, dropped at the end) — gives it 200 keys
of 50 teams, then runs the gateway's own path: records ``put`` on an
``outbox.Outbox`` (with the key noted as used, as settle does), drained by an
``outbox.writer.OutboxWriter`` under a ``Supervisor``, with the app's defaults
(batch size, flush interval, queue bound). Per backend, RUNS times each,
alternating:

- **paced**: RATE records/s offered for SECONDS (a producer task on the same
  loop, topping up every 2 ms), then the time until the last one is stored.
  Written/s = records stored within SECONDS ÷ SECONDS. The writer keeps up
  when nothing is dropped or refused, at most two batches are waiting or in
  flight at the end, and the rest is stored within a flush interval (+ 1 s).
- **max**: the producer keeps at least two full batches waiting, so the writer
  never waits; written/s = records stored during SECONDS (after a 1 s warm-up)
  ÷ SECONDS. This is the rate the target is judged on (≥ 5,000 records/s).

For every batch the writer stores: its size and how long its transaction took
(the writer's own ``last_write_s``, the same figure as ``/metrics``); per run:
the queue's peak depth, drops, write failures, the longest the event loop was
held (a 2 ms ticker; the data plane shares this loop in the gateway), this
process's CPU per record, and how busy other processes kept the cores (the
PostgreSQL server included — it does the other half of the work).

Records are realistic and varied (chat, streams, embeddings; errors, NULL
teams, first-byte times, cached tokens, adapters), built from
``UsageRecord``'s fields by name, so fields added with defaults need nothing
here; a pool of them is built before the timed part and cycled (request ids
repeat across cycles; nothing in the table is unique on them), then frozen
out of the garbage collector's walks (``gc.freeze``), so a full collection of
the bench's own objects does not show as the loop being held. After the runs,
the plans of the three time-range queries (overall, per team, per key) are
checked for their indexes.

Results: ``bench/results/usage_ledger-latest.{json,md}`` and a dated copy.
``--profile`` also writes a cProfile of one max run per backend to
``bench/.work/usage_ledger-profile-<backend>.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import importlib.metadata
import io
import json
import os
import platform
import pstats
import random
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from tests.support.bulk_identity import fill
from tests.support.postgres import Postgres, probe

from bench.procs import system_cpu_seconds
from bench.stats import median, percentile
from inferenceops.outbox import Outbox, UsageRecord
from inferenceops.outbox.writer import OutboxWriter
from inferenceops.settings import Settings
from inferenceops.store import Database, upgrade
from inferenceops.supervisor import Supervisor

ROOT = Path(__file__).resolve().parent.parent
WORK, RESULTS = ROOT / "bench" / ".work", ROOT / "bench" / "results"
TARGET = 5_000.0  # records/s, on each database (issue 10)
TEAMS, KEYS = 50, 200
POOL = 60_000
TICK_S = 0.002
_DEFAULTS = Settings.model_fields
FLUSH_S: float = _DEFAULTS["outbox_flush_s"].default
MAX_RECORDS: int = _DEFAULTS["outbox_max_records"].default
BATCH_SIZE: int = Outbox().batch_size


# -- records -----------------------------------------------------------------------------------

_MODELS = (("llama-3.1-8b", "llama-8b", 4), ("llama-3.1-70b", "llama-70b", 2),
           ("qwen2.5-7b", "qwen-7b", 2), ("gpt-4o-mini", "openai", 1),
           ("claude-sonnet", "anthropic", 1), ("bge-m3", "embed", 2))
_ENDPOINTS = (("chat/completions", 80), ("completions", 8), ("embeddings", 12))
_ERRORS = ((200, None, 930), (429, "rate_limited", 30), (503, "overloaded", 10),
           (499, "client_disconnected", 15), (502, "upstream_error", 10), (400, "invalid_request", 5))


def _weighted(rng: random.Random, options: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
    return rng.choices(options, weights=[o[-1] for o in options])[0]


def realistic_values(i: int, rng: random.Random, now: float) -> dict[str, Any]:
    """Values by field name for request ``i``: what settle would record for a varied mix of traffic."""
    model, deployment, replicas = rng.choice(_MODELS)
    endpoint = _weighted(rng, _ENDPOINTS)[0]
    status, error_code, _ = _weighted(rng, _ERRORS)
    embedding = endpoint == "embeddings"
    stream = not embedding and rng.random() < 0.6
    failed_early = status in (429, 400)  # refused before any engine saw it
    prompt = rng.randint(8, 4_000)
    completion = 0 if embedding or failed_early else rng.randint(1, 1_200)
    latency = round(rng.uniform(0.5, 3.0) if failed_early else rng.uniform(40.0, 25_000.0), 3)
    key = rng.randrange(KEYS)
    platform_key = key % 40 == 39  # a platform key: no team
    return {
        "request_id": f"{rng.getrandbits(128):032x}",
        "at": now - (POOL - i) * 3600.0 / POOL,  # the last hour, in order
        "key_id": f"key_{key:020}",
        "team_id": None if platform_key else f"team_{key % TEAMS:020}",
        "principal_id": f"svc_{key:020}" if key % 3 == 0 else f"usr_{key % TEAMS:020}",
        "principal_kind": "service_account" if key % 3 == 0 else "user",
        "model": model,
        "deployment": None if failed_early else deployment,
        "replica": None if failed_early else f"{deployment}-{rng.randrange(replicas)}",
        "endpoint": endpoint,
        "priority": "batch" if rng.random() < 0.1 else "interactive",
        "stream": stream,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens_reported": not failed_early and rng.random() < 0.97,
        "cost_nanos": prompt * 150 + completion * 600,
        "status": status,
        "error_code": error_code,
        "latency_ms": latency,
        "first_byte_ms": round(rng.uniform(15.0, 400.0), 3) if stream and not failed_early else None,
        "cached_tokens": rng.randrange(prompt) if rng.random() < 0.3 else 0,
        "adapter": f"lora-{rng.randrange(8)}" if deployment == "llama-8b" and rng.random() < 0.2 else None,
    }


def build_record(values: dict[str, Any]) -> UsageRecord:
    """A ``UsageRecord`` from values by name: fields it has take their value, others their default.

    A new field without a default stops the bench with its name (give it a realistic value above).
    """
    fields = dataclasses.fields(UsageRecord)
    missing = [f.name for f in fields if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise SystemExit(f"UsageRecord has fields this bench cannot fill: {', '.join(missing)} "
                         "(add realistic values in bench/usage_ledger.py realistic_values)")
    return UsageRecord(**{f.name: values[f.name] for f in fields if f.name in values})


def record_pool(n: int = POOL, seed: int = 10) -> list[UsageRecord]:
    rng, now = random.Random(seed), time.time()
    return [build_record(realistic_values(i, rng, now)) for i in range(n)]


# -- one run -----------------------------------------------------------------------------------


class TimedWriter(OutboxWriter):
    """The real writer; after each batch it stores, notes (records, seconds) as ``/metrics`` shows them."""

    def __init__(self, outbox: Outbox, url: str, *, flush_s: float) -> None:
        super().__init__(outbox, url, flush_s=flush_s)
        self.batches: list[tuple[int, float]] = []

    async def flush(self) -> int:
        n = await super().flush()
        if n:
            self.batches.append((self._outbox.last_batch, self._outbox.last_write_s))
        return n


class Ticker:
    """The longest gap between wake-ups of a task sleeping TICK_S: how long the loop was held."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    def __enter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def _put(outbox: Outbox, record: UsageRecord) -> None:
    outbox.put(record)  # what settle does: the record, and the key's use
    outbox.note_key_use(record.key_id)


async def run_once(url: str, mode: str, pool: list[UsageRecord], *, rate: float, seconds: float,
                   profile: cProfile.Profile | None = None) -> dict[str, Any]:
    outbox = Outbox(max_records=MAX_RECORDS)
    writer = TimedWriter(outbox, url, flush_s=FLUSH_S)
    supervisor = Supervisor()
    supervisor.add(writer, stop_deadline_s=120.0)
    n, sent, peak = len(pool), 0, 0
    await supervisor.start()
    cpu0, others0, wall0 = time.process_time(), system_cpu_seconds()["tasks"], time.perf_counter()
    drain_s: float | None = None
    with Ticker() as ticker:
        if profile is not None:
            profile.enable()
        started = time.perf_counter()
        if mode == "paced":
            total = int(rate * seconds)
            while sent < total:
                due = min(total, int(rate * (time.perf_counter() - started)))
                while sent < due:
                    _put(outbox, pool[sent % n])
                    sent += 1
                peak = max(peak, outbox.depth)
                await asyncio.sleep(TICK_S)
            ended = time.perf_counter()
            measured, window = outbox.written["usage"], ended - started
            backlog = sent - measured
            while outbox.written["usage"] < sent and time.perf_counter() - ended < 120:
                await asyncio.sleep(0.001)
            drain_s = time.perf_counter() - ended
            first_batch = 0
        else:
            low, high = 2 * outbox.batch_size, 4 * outbox.batch_size
            warm_until, end = started + 1.0, started + 1.0 + seconds
            first_batch = base = -1
            backlog = None
            window_start = started
            while (now := time.perf_counter()) < end:
                if base < 0 and now >= warm_until:
                    base, window_start, first_batch = outbox.written["usage"], now, len(writer.batches)
                if outbox.depth < low:
                    while outbox.depth < high:
                        _put(outbox, pool[sent % n])
                        sent += 1
                peak = max(peak, outbox.depth)
                await asyncio.sleep(TICK_S)  # TICK_S of records is far less than two batches
            measured, window = outbox.written["usage"] - base, time.perf_counter() - window_start
        if profile is not None:
            profile.disable()
    cpu = time.process_time() - cpu0
    others = system_cpu_seconds()["tasks"] - others0 - cpu
    wall = time.perf_counter() - wall0
    await supervisor.stop()  # the writer flushes the rest, as at shutdown
    batches = writer.batches[first_batch:]
    sizes = [b[0] for b in batches]
    lat = [b[1] for b in batches]
    return {
        "mode": mode, "offered_per_s": rate if mode == "paced" else None, "seconds": round(window, 3),
        "records_put": sent, "records_written_in_window": measured,
        "written_per_s": round(measured / window),
        "backlog_at_window_end": backlog,
        "drain_after_window_s": None if drain_s is None else round(drain_s, 3),
        "batches": len(batches),
        "batch_size_median": median(sizes) if sizes else 0, "batch_size_max": max(sizes, default=0),
        "write_ms_p50": round(percentile(lat, 50) * 1e3, 2) if lat else None,
        "write_ms_p99": round(percentile(lat, 99) * 1e3, 2) if lat else None,
        "write_ms_max": round(max(lat) * 1e3, 2) if lat else None,
        "queue_depth_peak": peak, "dropped": dict(outbox.dropped),
        "write_failures": outbox.write_failures,
        "written_total": dict(outbox.written), "left_in_queue": outbox.depth,
        "longest_loop_stall_ms": round(ticker.longest * 1e3, 1),
        "cpu_us_per_record": round(cpu * 1e6 / max(1, outbox.written["usage"]), 1),
        "others_cpu_share_of_cores": round(others / (wall * (os.cpu_count() or 1)), 2),
    }


# -- per backend -------------------------------------------------------------------------------

_PLANS = {
    "overall": "SELECT count(*), sum(cost_nanos) FROM usage_records WHERE at >= :lo AND at < :hi",
    "per_team": "SELECT count(*), sum(cost_nanos) FROM usage_records "
                "WHERE team_id = :team AND at >= :lo AND at < :hi",
    "per_key": "SELECT count(*), sum(cost_nanos) FROM usage_records "
               "WHERE key_id = :key AND at >= :lo AND at < :hi",
}


async def query_plans(db: Database) -> dict[str, dict[str, Any]]:
    """Each time-range query's plan, and which index it uses (five minutes of the records' hour)."""
    hi = datetime.now(UTC) - timedelta(minutes=30)
    params = {"lo": hi - timedelta(minutes=5), "hi": hi, "team": f"team_{7:020}",
              "key": f"key_{7:020}"}
    explain = "EXPLAIN QUERY PLAN " if db.backend == "sqlite" else "EXPLAIN "
    if db.backend == "postgresql":
        async with db.transaction() as tx:
            await tx.execute(text("ANALYZE usage_records"))
    out = {}
    async with db.read() as tx:
        for name, sql in _PLANS.items():
            rows = (await tx.execute(text(explain + sql), params)).all()
            plan = "\n".join(str(r[-1]) for r in rows)
            used = sorted({w for w in plan.replace("(", " ").replace(")", " ").split()
                           if w.startswith("ix_usage_records")})
            out[name] = {"plan": plan, "indexes": used}
    return out


async def measure(url: str, backend: str, pool: list[UsageRecord], *, rate: float, seconds: float,
                  runs: int, profile: bool) -> dict[str, Any]:
    await upgrade(url)
    db = Database(url)
    try:
        await fill(db, teams=TEAMS, keys=KEYS, revoked=0)
        if backend == "sqlite":
            async with db.read() as tx:
                journal = (await tx.execute(text("PRAGMA journal_mode"))).scalar_one()
                sync = (await tx.execute(text("PRAGMA synchronous"))).scalar_one()
            server = f"SQLite {sqlite3.sqlite_version}, journal_mode={journal}, synchronous={sync}"
        else:
            async with db.read() as tx:
                server = str((await tx.execute(text("SHOW server_version"))).scalar_one())
                commit = (await tx.execute(text("SHOW synchronous_commit"))).scalar_one()
            server = f"PostgreSQL {server}, synchronous_commit={commit}"
        results: dict[str, list[dict[str, Any]]] = {"paced": [], "max": []}
        for r in range(runs):
            for mode in ("paced", "max") if r % 2 == 0 else ("max", "paced"):
                one = await run_once(url, mode, pool, rate=rate, seconds=seconds)
                results[mode].append(one)
                print(f"  {backend} {mode} run {r + 1}: {one['written_per_s']:,}/s, batches "
                      f"{one['batch_size_median']:.0f}, write p50 {one['write_ms_p50']} ms "
                      f"p99 {one['write_ms_p99']} ms, peak depth {one['queue_depth_peak']}, "
                      f"others {one['others_cpu_share_of_cores']:.0%}", flush=True)
        if profile:
            prof = cProfile.Profile()
            await run_once(url, "max", pool, rate=rate, seconds=seconds, profile=prof)
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(40)
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(40)
            path = WORK / f"usage_ledger-profile-{backend}.txt"
            path.write_text(out.getvalue())
            print(f"  profile: {path}")
        plans = await query_plans(db)
        async with db.read() as tx:
            rows = (await tx.execute(text("SELECT count(*) FROM usage_records"))).scalar_one()
    finally:
        await db.close()
    return {"backend": backend, "server": server, "rows_at_end": rows, "runs": results,
            "summary": summarise(results), "time_range_plans": plans}


def summarise(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, runs in results.items():
        out[mode] = {
            "written_per_s_median": round(median([r["written_per_s"] for r in runs])),
            "written_per_s_runs": [r["written_per_s"] for r in runs],
            "batch_size_median": median([r["batch_size_median"] for r in runs]),
            "write_ms_p50_median": median([r["write_ms_p50"] for r in runs]),
            "write_ms_p99_median": median([r["write_ms_p99"] for r in runs]),
            "queue_depth_peak_max": max(r["queue_depth_peak"] for r in runs),
            "dropped": sum(sum(r["dropped"].values()) for r in runs),
            "write_failures": sum(r["write_failures"] for r in runs),
            "longest_loop_stall_ms": max(r["longest_loop_stall_ms"] for r in runs),
            "cpu_us_per_record_median": median([r["cpu_us_per_record"] for r in runs]),
            "others_cpu_share_median": median([r["others_cpu_share_of_cores"] for r in runs]),
        }
        if mode == "paced":
            out[mode]["backlog_at_window_end_max"] = max(r["backlog_at_window_end"] for r in runs)
            out[mode]["drain_after_window_s_max"] = max(r["drain_after_window_s"] for r in runs)
    paced, best = out["paced"], out["max"]
    out["kept_up_at_target"] = (paced["dropped"] == 0 and paced["write_failures"] == 0
                                and paced["backlog_at_window_end_max"] <= 2 * BATCH_SIZE
                                and paced["drain_after_window_s_max"] <= FLUSH_S + 1.0)
    out["met"] = best["written_per_s_median"] >= TARGET and out["kept_up_at_target"]
    return out


# -- report ------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu_model = next((line.split(":", 1)[1].strip()
                      for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "unknown")
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"), "nproc": os.cpu_count(),
        "cpu_model": cpu_model, "kernel": platform.release(), "python": platform.python_version(),
        "packages": {name: version(name) for name in ("sqlalchemy", "aiosqlite", "asyncpg", "uvloop")},
        "sqlite": sqlite3.sqlite_version,
        "git_commit": git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(git("status", "--porcelain", "--", "src")),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def markdown(doc: dict[str, Any]) -> str:
    info = doc["machine"]
    rows = [f"# Usage ledger: records/s through the outbox into the store (target ≥ {TARGET:,.0f}/s)", "",
            "| backend | mode | records/s written (median) | runs | batch size (median) "
            "| write p50 / p99 per batch | queue depth peak | drops | loop held ≤ | CPU per record "
            "| target met? |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in doc["results"]:
        s = r["summary"]
        for mode in ("max", "paced"):
            m = s[mode]
            label = ("as fast as it goes" if mode == "max"
                     else f"{doc['rate']:,.0f}/s offered for {doc['seconds']:g} s")
            verdict = ""
            if mode == "max":
                verdict = (f"{'**yes**' if m['written_per_s_median'] >= TARGET else '**no**'} "
                           f"(≥ {TARGET:,.0f}/s)")
            else:
                verdict = ("kept up" if s["kept_up_at_target"] else "**fell behind**") + \
                    (f" (≤ {m['backlog_at_window_end_max']:,} waiting at the end, all stored "
                     f"{m['drain_after_window_s_max']:.2f} s later)")
            runs = ", ".join(f"{x:,}" for x in m["written_per_s_runs"])
            rows.append(f"| {r['backend']} | {label} | {m['written_per_s_median']:,} | {runs} "
                        f"| {m['batch_size_median']:.0f} | {m['write_ms_p50_median']:.1f} / "
                        f"{m['write_ms_p99_median']:.1f} ms | {m['queue_depth_peak_max']:,} "
                        f"| {m['dropped']} | {m['longest_loop_stall_ms']:.0f} ms "
                        f"| {m['cpu_us_per_record_median']:.0f} µs | {verdict} |")
    rows.append("")
    for r in doc["results"]:
        plans = "; ".join(f"{name}: {', '.join(p['indexes']) or '**no index**'}"
                          for name, p in r["time_range_plans"].items())
        rows.append(f"- {r['backend']} ({r['server']}, {r['rows_at_end']:,} rows at the end) — "
                    f"time-range queries use {plans}.")
    if doc.get("postgresql_skipped"):
        rows.append(f"- PostgreSQL skipped: {doc['postgresql_skipped']}")
    rows += ["", f"The real `Outbox` + `OutboxWriter` (under a `Supervisor`) with the app's defaults: "
             f"batches of up to {BATCH_SIZE:,}, flush every {FLUSH_S:g} s or when a batch waits, "
             f"queue bound {MAX_RECORDS:,}; each record with its key noted as used. "
             f"*As fast as it goes*: the queue always holds two full batches or more, records stored "
             f"over {doc['seconds']:g} s after 1 s of warm-up. *Offered*: {doc['rate']:,.0f} records/s "
             f"for {doc['seconds']:g} s, records stored within those seconds ÷ seconds; kept up = no "
             f"drops or failures, at most two batches waiting or in flight at the end, and all stored "
             f"within the flush interval + 1 s. Write time = the writer's "
             f"transaction per batch (`inferenceops_outbox_write_seconds`). Loop held = longest gap of "
             f"a {TICK_S * 1e3:g} ms ticker on the writer's loop (on a busy machine it includes time "
             f"the OS gave the cores to other processes). CPU per record: this process only "
             f"(the database server's is not in it). {doc['runs']} runs per mode, alternating; medians. "
             f"Measured {info['timestamp']} at commit {info['git_commit'][:10]}"
             f"{' (src modified)' if info['git_dirty'] else ''} on {info['nproc']} cores "
             f"({info['cpu_model']}), load average {' '.join(info['loadavg_at_start'])} at the start; "
             f"other processes used a median "
             + ", ".join(f"{r['backend']} {r['summary']['max']['others_cpu_share_median']:.0%}"
                         for r in doc["results"])
             + " of the cores during the max runs (for PostgreSQL that includes its server)."]
    return "\n".join(rows) + "\n"


def write(doc: dict[str, Any]) -> str:
    md = markdown(doc)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(doc["machine"]["timestamp"])
    for name in ("usage_ledger-latest", f"usage_ledger-{stamp:%Y%m%d-%H%M}"):
        (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        (RESULTS / f"{name}.md").write_text(md)
    return md


async def main(args: argparse.Namespace) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"machine": machine_info(), "rate": args.rate, "seconds": args.seconds,
                           "runs": args.runs, "batch_size": BATCH_SIZE, "flush_s": FLUSH_S,
                           "max_records": MAX_RECORDS,
                           "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
                           "results": []}
    pool = record_pool()
    gc.collect()
    gc.freeze()  # the pool is the bench's, not the writer's: keep it out of the collector's walks
    kw = {"rate": args.rate, "seconds": args.seconds, "runs": args.runs, "profile": args.profile}
    if "sqlite" in args.backends:
        path = WORK / "usage-ledger-bench.db"
        for old in WORK.glob("usage-ledger-bench.db*"):
            old.unlink()
        doc["results"].append(await measure(f"sqlite+aiosqlite:///{path}", "sqlite", pool, **kw))
        for old in WORK.glob("usage-ledger-bench.db*"):
            old.unlink()
    if "postgresql" in args.backends:
        dsn, reason = await probe()
        if dsn is None:
            doc["postgresql_skipped"] = reason
            print(f"PostgreSQL skipped (nothing answered at 127.0.0.1:5432): {reason}")
        else:
            pg = Postgres(dsn)
            name = await pg.create()
            try:
                doc["results"].append(await measure(pg.url(name), "postgresql", pool, **kw))
            finally:
                await pg.drop(name)
    doc["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    return doc


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.usage_ledger",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rate", type=float, default=TARGET, help="records/s offered in paced runs")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--runs", type=int, default=3, help="runs per mode and backend")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one max run per backend (bench/.work/)")
    args = parser.parse_args()
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        doc = runner.run(main(args))
    print(write(doc))


if __name__ == "__main__":
    run()
