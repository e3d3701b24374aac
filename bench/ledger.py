"""What admission costs per request: the memory ledger's CPU and the Redis ledger's round trips.

``python -m bench.ledger`` measures, with one realistic request of 5 checks
(requests/min and tokens/min of its key, tokens/min of its team, concurrency
of its key, the team's monthly budget; limits high enough that all are admitted):

- memory ledger: CPU (``process_time``) per admit+settle, over ROUNDS rounds of
  REQUESTS each, median of the rounds; the request ids are made beforehand so
  only the ledger is timed;
- memory ledger: what it holds (``tracemalloc``) after HELD_SMALL and after
  HELD_LARGE admit+settle pairs at HELD_RATE requests/s on an injected clock
  (the gateway at full load, all inside one window): per-request state shows
  as growth between the two;
- Redis ledger (local server, ``--redis-url``) over two clients: ``resp`` (the
  ledger's own client, ``admission/resp.py``) and ``redis-py`` (the same
  ledger and script over redis-py's asyncio client, as the ledger was before
  ``resp.py``; the reference). For each client, in alternating blocks so both
  see the same machine: a plain ``PING`` and sequential admit+settle pairs,
  wall time of each call (p50/p99 pooled over BLOCKS blocks) and client CPU per
  PING and per admit+settle (median over blocks); then CONCURRENT tasks doing
  admit+settle pairs at once (the gateway's shape: pipelining and joined
  writes), CPU per pair and pairs per second, median over blocks;
- the floor: CPU per PING over a plain blocking socket (``socket_floor``), in
  every block, and each client's CPU per admit+settle above twice that floor:
  what the client and the ledger's own code cost, without the round trips'
  sleep and wake-up, which on this VM depend on how idle the machine is;
- the server: µs per ``EVALSHA`` from ``INFO commandstats`` (deltas over the
  blocks, so other users of the server add noise), and the keys and bytes
  (``MEMORY USAGE``) the bench's prefix holds once every pair has settled.

Each Redis ledger runs as in the gateway: a live instance with its heartbeat
task (``admission/instance.py``, every 2 s), so the admissions pay for the
liveness checks their leases need (the beats themselves are off the hot path,
and land in the measured blocks as they would in a gateway).

The event loop is uvloop, as in the gateway. The other processes on this
2-core machine add noise; medians over alternating blocks are what make the
clients comparable. Results: ``bench/results/ledger-latest.{json,md}`` and a
dated copy. Redis keys go under fresh prefixes that are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import socket
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from bench.stats import median, percentile
from inferenceops.admission.instance import InstanceHeartbeat
from inferenceops.admission.ledger import Admitted, Check, CheckKind, Ledger, LedgerUnavailable
from inferenceops.admission.memory_ledger import MemoryLedger
from inferenceops.admission.redis_ledger import SCRIPT, SCRIPT_SHA, RedisLedger
from inferenceops.admission.resp import Target, parse_url

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ROUNDS, REQUESTS = 7, 20_000  # memory
HELD_SMALL, HELD_LARGE, HELD_RATE = 10_000, 200_000, 4_500.0  # memory held, requests/s
BLOCKS, CALLS = 5, 2_000  # redis, per block and client
CONCURRENT, CONCURRENT_PAIRS = 64, 8_000  # redis, tasks at once and pairs per block
LEASE_S = 3600.0
CHECKS = (
    Check(CheckKind.REQUESTS, "rpm:key:k_1", 1_000_000_000, 1, "requests per minute of key 'k_1'"),
    Check(CheckKind.TOKENS, "tpm:key:k_1", 10**15, 1_500, "tokens per minute of key 'k_1'"),
    Check(CheckKind.TOKENS, "tpm:team:t_1", 10**15, 1_500, "tokens per minute of team 'ml'"),
    Check(CheckKind.CONCURRENCY, "conc:key:k_1", 1_000, 1, "concurrent requests of key 'k_1'"),
    Check(CheckKind.BUDGET, "budget:team:t_1:2026-11", 10**15, 30_000_000,
          "budget of team 'ml' for 2026-11", ttl_s=40 * 86400.0),
)


class RedisPyLedger(RedisLedger):
    """The reference: the same ledger and script over redis-py, as ``RedisLedger`` was before ``resp.py``.

    Same pool settings as then: blocking pool of 64, no retries, 0.5 s timeouts.
    """

    def __init__(self, url: str, *, prefix: str) -> None:
        super().__init__(url, prefix=prefix)
        self._pool = BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=0.5, socket_timeout=0.5, socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0))
        self._redis = Redis(connection_pool=self._pool)

    async def _call(self, what: str, keys: list[str], args: list[Any]) -> Any:
        if what == "heartbeat":  # not measured: over the ledger's own client, never a full pool
            return await super()._call(what, keys, args)
        try:
            return await self._redis.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
        except NoScriptError:
            await self._redis.script_load(SCRIPT)
            return await self._redis.evalsha(SCRIPT_SHA, len(keys), *keys, *args)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
        await self._pool.aclose()
        await super().close()


async def settle_pairs(ledger: Ledger, ids: list[str]) -> None:
    for request_id in ids:
        result = await ledger.admit(request_id, CHECKS, LEASE_S)
        assert isinstance(result, Admitted), result
        await ledger.settle(request_id, CHECKS, 700, 12_000_000)


async def memory_cpu() -> dict[str, Any]:
    ledger = MemoryLedger()
    await settle_pairs(ledger, [f"warm-{i}" for i in range(2_000)])
    per_round = []
    for r in range(ROUNDS):
        ids = [f"m{r}-{i}-{uuid.uuid4().hex[:8]}" for i in range(REQUESTS)]
        started = time.process_time()
        await settle_pairs(ledger, ids)
        per_round.append((time.process_time() - started) * 1e6 / REQUESTS)
    return {"rounds": ROUNDS, "requests_per_round": REQUESTS, "checks": len(CHECKS),
            "cpu_us_admit_settle_median": round(median(per_round), 2),
            "cpu_us_admit_settle_rounds": [round(x, 2) for x in per_round]}


async def memory_held() -> dict[str, Any]:
    """Bytes the ledger holds after HELD_SMALL and HELD_LARGE pairs at HELD_RATE a second."""
    now = [1_000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    tracemalloc.start()
    try:
        held = []
        base = tracemalloc.get_traced_memory()[0]
        for n, upto in enumerate((HELD_SMALL, HELD_LARGE)):
            for i in range(HELD_SMALL if n else 0, upto):
                now[0] += 1 / HELD_RATE
                request_id = f"h-{i}"
                assert isinstance(await ledger.admit(request_id, CHECKS, LEASE_S), Admitted)
                await ledger.settle(request_id, CHECKS, 700, 12_000_000)
            held.append(tracemalloc.get_traced_memory()[0] - base)
    finally:
        tracemalloc.stop()
    entries = getattr(ledger, "entries", None)
    return {"rate_per_s": HELD_RATE, "requests": [HELD_SMALL, HELD_LARGE],
            "held_bytes": held, "growth_bytes": held[1] - held[0],
            "entries": entries() if entries else None}


async def sequential_block(ledger: RedisLedger, tag: str, ping: list[float], admit: list[float],
                           settle: list[float]) -> tuple[float, float]:
    """CALLS PINGs, then CALLS admit+settle pairs, one at a time: CPU µs per PING and per pair."""
    clock, cpu = time.perf_counter, time.process_time
    started = cpu()
    for _ in range(CALLS):
        t0 = clock()
        await ledger.ping()
        ping.append(clock() - t0)
    ping_cpu = (cpu() - started) * 1e6 / CALLS
    ids = [f"{tag}-{i}" for i in range(CALLS)]
    started = cpu()
    for request_id in ids:
        t0 = clock()
        result = await ledger.admit(request_id, CHECKS, LEASE_S)
        t1 = clock()
        await ledger.settle(request_id, CHECKS, 700, 12_000_000)
        admit.append(t1 - t0)
        settle.append(clock() - t1)
        assert isinstance(result, Admitted), result
    return ping_cpu, (cpu() - started) * 1e6 / CALLS


def socket_floor(target: Target) -> float:
    """CPU µs per PING over a plain blocking socket, with no client library at all.

    Each sequential round trip costs the process a send, a sleep, a wake-up and a
    receive. On this 2-core VM that is ~7 µs while the other core is busy but
    ~24 µs when the machine is idle (waking a halted vCPU is charged to the
    process), which moves every sequential number between runs. No client goes
    below this floor, so the report also gives each client's CPU above it.
    """
    family, address = ((socket.AF_UNIX, target.path) if target.path
                       else (socket.AF_INET, (target.host, target.port)))
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.connect(address)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ping = b"*1\r\n$4\r\nPING\r\n"  # a server wanting AUTH answers -NOAUTH: still one round trip
        started = time.process_time()
        for _ in range(CALLS):
            sock.sendall(ping)
            sock.recv(256)
        return (time.process_time() - started) * 1e6 / CALLS


async def concurrent_block(ledger: Ledger, tag: str) -> tuple[float, float]:
    """CONCURRENT tasks share CONCURRENT_PAIRS admit+settle pairs: CPU µs per pair, pairs per second."""
    per_task = CONCURRENT_PAIRS // CONCURRENT
    ids = [[f"{tag}-{t}-{i}" for i in range(per_task)] for t in range(CONCURRENT)]
    started, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(settle_pairs(ledger, chunk) for chunk in ids))
    pairs = per_task * CONCURRENT
    return ((time.process_time() - started) * 1e6 / pairs, pairs / (time.perf_counter() - wall))


def _lat(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(samples, 50) * 1e3, 3),
            "p99_ms": round(percentile(samples, 99) * 1e3, 3)}


async def redis_clients(url: str) -> dict[str, Any]:
    prefix = f"bench-ledger-{uuid.uuid4().hex[:8]}"
    ledgers = {"resp": RedisLedger(url, prefix=prefix), "redis-py": RedisPyLedger(url, prefix=prefix)}
    kinds = ("ping", "admit", "settle", "ping_cpu", "pair_cpu", "above_floor", "conc_cpu", "conc_rate")
    samples: dict[str, dict[str, list[float]]] = {name: {kind: [] for kind in kinds} for name in ledgers}
    floors: list[float] = []
    heartbeats = [InstanceHeartbeat(ledger) for ledger in ledgers.values()]
    for heartbeat in heartbeats:
        await heartbeat.start()
    beating = [asyncio.create_task(heartbeat.run()) for heartbeat in heartbeats]  # as supervised
    stats_before = await _evalsha_stats(url)
    try:
        for name, ledger in ledgers.items():  # warm: connections, script cache
            for i in range(500):
                await ledger.ping()
                await settle_pairs(ledger, [f"warm-{name}-{i}"])
            await concurrent_block(ledger, f"warm-c-{name}")
        for block in range(BLOCKS):
            order = list(ledgers) if block % 2 == 0 else list(reversed(ledgers))  # ABBA
            floors.append(floor := socket_floor(parse_url(url)))
            for name in order:
                s = samples[name]
                ping_cpu, pair_cpu = await sequential_block(ledgers[name], f"{name}-{block}", s["ping"],
                                                            s["admit"], s["settle"])
                s["ping_cpu"].append(ping_cpu)
                s["pair_cpu"].append(pair_cpu)
                s["above_floor"].append(pair_cpu - 2 * floor)
            for name in order:
                conc_cpu, rate = await concurrent_block(ledgers[name], f"{name}-c{block}")
                samples[name]["conc_cpu"].append(conc_cpu)
                samples[name]["conc_rate"].append(rate)
        stats_after = await _evalsha_stats(url)
        held = await _held(url, prefix)
    finally:
        for task in beating:
            task.cancel()
        await asyncio.gather(*beating, return_exceptions=True)
        for heartbeat in heartbeats:
            await heartbeat.stop()
        for ledger in ledgers.values():
            await ledger.close()
        await _delete(url, prefix)
    calls, usec = (after - before for after, before in zip(stats_after, stats_before, strict=True))
    clients = {name: {"ping": _lat(s["ping"]), "admit": _lat(s["admit"]), "settle": _lat(s["settle"]),
                      "client_cpu_us_ping": round(median(s["ping_cpu"]), 1),
                      "client_cpu_us_admit_settle": round(median(s["pair_cpu"]), 1),
                      "client_cpu_us_admit_settle_blocks": [round(x, 1) for x in s["pair_cpu"]],
                      "client_cpu_us_admit_settle_above_floor": round(median(s["above_floor"]), 1),
                      "concurrent_cpu_us_admit_settle": round(median(s["conc_cpu"]), 1),
                      "concurrent_pairs_per_s": round(median(s["conc_rate"]))}
               for name, s in samples.items()}
    return {"url": url, "blocks": BLOCKS, "calls_per_block": CALLS, "concurrent_tasks": CONCURRENT,
            "concurrent_pairs_per_block": CONCURRENT_PAIRS, "server": await _server_version(url),
            "socket_floor_cpu_us_ping": round(median(floors), 1),
            "server_us_per_evalsha": round(usec / calls, 1) if calls else None, "held": held,
            "socket_floor_cpu_us_ping_blocks": [round(x, 1) for x in floors], "clients": clients}


async def _evalsha_stats(url: str) -> tuple[int, int]:
    """(calls, µs) of EVALSHA since the server's stats were last reset."""
    client = Redis.from_url(url)
    try:
        stat = (await client.info("commandstats")).get("cmdstat_evalsha", {})
        return int(stat.get("calls", 0)), int(stat.get("usec", 0))
    finally:
        await client.aclose()


async def _held(url: str, prefix: str) -> dict[str, Any]:
    """Keys and bytes under the bench's prefix once every request has settled."""
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match="{" + prefix + "}:*", count=1000)]
        sizes = [await client.memory_usage(key, samples=0) or 0 for key in keys]
        tickets = sum(b":q:" in key for key in keys)
        lease_sets = sum(b":o:" in key for key in keys)
        return {"keys": len(keys), "ticket_keys": tickets, "lease_set_keys": lease_sets,
                "bytes": sum(sizes)}
    finally:
        await client.aclose()


async def _delete(url: str, prefix: str) -> None:
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match="{" + prefix + "}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _server_version(url: str) -> str:
    client = Redis.from_url(url)
    try:
        return str((await client.info("server"))["redis_version"])
    finally:
        await client.aclose()


def write(doc: dict[str, Any]) -> str:
    mem, red = doc["memory"], doc["redis"]
    held = doc["memory_held"]
    small, large = held["requests"]
    rows = ["# Admission ledger: cost per request (5 checks)", "",
            "| ledger | client | measurement | p50 | p99 | p50 ÷ PING p50 |", "|---|---|---|---:|---:|---:|",
            f"| memory | | CPU per admit+settle (median of {mem['rounds']} × {mem['requests_per_round']:,}) "
            f"| {mem['cpu_us_admit_settle_median']:.1f} µs | | |",
            f"| memory | | held after {small:,} / {large:,} admit+settle at {held['rate_per_s']:,.0f}/s "
            f"| {held['held_bytes'][0] / 1e6:.2f} / {held['held_bytes'][1] / 1e6:.2f} MB | | |"]
    if red is not None:
        server = f"redis {red['server']}"
        rows.append(f"| {server} | (none: blocking socket) | CPU per PING: the floor of any round trip "
                    f"| {red['socket_floor_cpu_us_ping']:.1f} µs | | |")
        rows.append(f"| {server} | (any) | server time per EVALSHA (commandstats) "
                    f"| {red['server_us_per_evalsha']} µs | | |")
        rows.append(f"| {server} | (any) | held once every pair settled: keys (tickets), bytes "
                    f"| {red['held']['keys']} ({red['held']['ticket_keys']}), "
                    f"{red['held']['bytes'] / 1e3:,.1f} kB | | |")
        for client, r in red["clients"].items():
            base = r["ping"]["p50_ms"]
            for name, label in (("ping", "PING round trip (baseline)"), ("admit", "admit (1 EVALSHA)"),
                                ("settle", "settle (1 EVALSHA)")):
                rows.append(f"| {server} | {client} | {label} | {r[name]['p50_ms'] * 1000:.0f} µs "
                            f"| {r[name]['p99_ms'] * 1000:.0f} µs | {r[name]['p50_ms'] / base:.2f} |")
            rows += [f"| {server} | {client} | client CPU per PING | {r['client_cpu_us_ping']:.1f} µs | | |",
                     f"| {server} | {client} | **client CPU per admit+settle** "
                     f"| **{r['client_cpu_us_admit_settle']:.1f} µs** | | |",
                     f"| {server} | {client} | client CPU per admit+settle above 2 × the floor "
                     f"| {r['client_cpu_us_admit_settle_above_floor']:.1f} µs | | |",
                     f"| {server} | {client} | {red['concurrent_tasks']} concurrent callers: client CPU per "
                     f"admit+settle | {r['concurrent_cpu_us_admit_settle']:.1f} µs | | |",
                     f"| {server} | {client} | {red['concurrent_tasks']} concurrent callers: admit+settle "
                     f"pairs/s | {r['concurrent_pairs_per_s']:,} | | |"]
    rows += ["", "Targets: memory ≤ 20 µs CPU per admit+settle; Redis (resp client) well under 60 µs "
             "client CPU per admit+settle. `resp` is the ledger's own client (admission/resp.py); "
             "`redis-py` is the same ledger over redis-py's asyncio client (the reference, as before "
             "resp.py). Sequential rows: one caller, CPU = median over "
             f"{red['blocks'] if red else BLOCKS} alternating blocks. The floor is one PING over a plain "
             "blocking socket: every sequential round trip pays it, whatever the client (a send, a sleep, "
             "a wake-up, a receive); on this VM it is ~7 µs while the other core is busy and ~24 µs when "
             "the machine is idle, so sequential CPU moves between runs by up to 2 × 17 µs per pair, while "
             "the rows above the floor and the concurrent rows stay put. "
             "Held: the bytes the memory ledger holds (tracemalloc) after that many pairs on an "
             "injected clock, all within one 60 s window, so any per-request state shows as growth; "
             "for Redis, the keys and MEMORY USAGE under the bench's prefix once all pairs settled "
             "(with the per-instance keys: each client's heartbeat, the registry, the walk flag). "
             "Each Redis ledger is a live instance with its heartbeat task running, as in the gateway. "
             "Server time per EVALSHA is the commandstats delta over the blocks (both clients run the "
             "same script; other users of the server add noise). "
             f"{doc['loop']} loop, local server. Measured {doc['timestamp']} on {doc['nproc']} cores, "
             "with other processes running: compare clients within one run."]
    if red is None:
        rows.append(f"Redis skipped: {doc['redis_skipped']}")
    md = "\n".join(rows) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(doc["timestamp"])
    for name in ("ledger-latest", f"ledger-{stamp:%Y%m%d-%H%M}"):
        (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        (RESULTS / f"{name}.md").write_text(md)
    return md


async def main(url: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                           "nproc": os.cpu_count(), "python": platform.python_version(),
                           "redis_py": importlib.metadata.version("redis"),
                           "hiredis": importlib.metadata.version("hiredis"),
                           "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
                           "memory": await memory_cpu(), "memory_held": await memory_held(),
                           "redis": None}
    try:
        doc["redis"] = await redis_clients(url)
    except (LedgerUnavailable, RedisError, OSError) as error:  # no server: skip that half, say why
        doc["redis_skipped"] = f"{type(error).__name__}: {error}"
    return doc


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get("INFERENCEOPS_BENCH_REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        doc = runner.run(main(args.redis_url))
    print(write(doc))


if __name__ == "__main__":
    run()
