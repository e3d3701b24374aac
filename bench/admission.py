"""What the admission stage costs one request, in-process: ``python -m bench.admission``.

The whole stage as the gateway runs it — plan the checks from the snapshot's
policy, one atomic ledger admission, rate-limit headers, a deployment slot,
then settlement with the usage read from the engine's answer — for the same
rules ``bench.run --admission`` uses (3 key limits, 2 model limits, a priced
key budget: 6 counters, plus a deployment capacity):

- memory ledger: CPU (``process_time``) per request, median of ROUNDS rounds;
  the target is <= 0.1 ms;
- Redis ledger (``--redis-url``): wall time per request of the stage, p50/p99,
  against a plain PING round trip in the same run (what "one round trip"
  costs here), alternating blocks; client CPU per request.

Results: ``bench/results/admission-latest.{json,md}``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import upstream
from bench.stats import median, percentile
from inferenceops.admission.control import AdmissionControl
from inferenceops.admission.memory_ledger import MemoryLedger
from inferenceops.admission.redis_ledger import RedisLedger
from inferenceops.admission.resp import RespClient
from inferenceops.metering.usage import usage_from_body
from inferenceops.platform import (
    ApiKey,
    Catalog,
    Deployment,
    Endpoint,
    Identity,
    Model,
    Principal,
    Replica,
    Snapshot,
)
from inferenceops.platform.policy import (
    Budget,
    BudgetRule,
    LimitRule,
    Period,
    Policy,
    Price,
    RateLimit,
    Scope,
)
from inferenceops.platform.priority import Priority

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ROUNDS, PER_ROUND = 7, 20_000
REDIS_BLOCKS, PER_BLOCK = 5, 400
BIG = 10**12

KEY = ApiKey("key_bench", "sk-io-be", Principal("usr_bench", platform_role="platform-admin"), None,
             frozenset({"inference"}))
DEPLOYMENT = Deployment("bench", "openai", "m", (Replica("bench-0", "http://127.0.0.1:1/v1"),),
                        capacity=10_000)
MODEL = Model(upstream.MODEL, DEPLOYMENT, frozenset({Endpoint.CHAT}))
POLICY = Policy(
    limits=[LimitRule(Scope.KEY, "*", RateLimit(rpm=BIG, tpm=BIG, concurrency=100_000)),
            LimitRule(Scope.MODEL, upstream.MODEL, RateLimit(rpm=BIG, tpm=BIG))],
    budgets=[BudgetRule(Scope.KEY, "*", Budget(10**15, Period.MONTHLY))],
    prices={upstream.MODEL: Price.per_token(input=150, output=600)})
SNAPSHOT = Snapshot(Catalog([MODEL]), Identity([], {}), POLICY)
BODY_SIZE = 120


async def one_request(admission: AdmissionControl) -> None:
    """What the pipeline's *admit* and *settle* stages ask of admission for one answered request."""
    admitted = await admission.admit(SNAPSHOT, KEY, MODEL, BODY_SIZE, 16, Priority.INTERACTIVE)
    assert admitted is not None
    usage = usage_from_body(upstream.COMPLETION)
    assert usage is not None
    price = SNAPSHOT.policy.price(MODEL.name, time.time())
    assert price is not None
    await admission.finish(admitted.ticket, reached_engine=True, tokens=usage.total,
                           cost=price.cost(usage.prompt_tokens, usage.completion_tokens,
                                           usage.cached_tokens))


async def memory_cpu() -> dict[str, Any]:
    admission = AdmissionControl(MemoryLedger())
    for _ in range(2000):
        await one_request(admission)
    rounds = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(PER_ROUND):
            await one_request(admission)
        rounds.append((time.process_time() - started) / PER_ROUND * 1e6)
    return {"cpu_us_per_request_median": round(median(rounds), 2),
            "rounds_us": [round(r, 2) for r in rounds]}


async def redis_wall(url: str) -> dict[str, Any]:
    ledger = RedisLedger(url, prefix=f"bench-admission-{uuid.uuid4().hex[:8]}")
    admission = AdmissionControl(ledger)
    ping = RespClient(url)
    stage, pings, cpu = [], [], []
    try:
        for _ in range(200):
            await one_request(admission)
        for _ in range(REDIS_BLOCKS):
            for _ in range(PER_BLOCK):
                started = time.perf_counter()
                await ping.call("PING")
                pings.append(time.perf_counter() - started)
            cpu_started = time.process_time()
            for _ in range(PER_BLOCK):
                started = time.perf_counter()
                await one_request(admission)
                stage.append(time.perf_counter() - started)
            cpu.append((time.process_time() - cpu_started) / PER_BLOCK * 1e6)
    finally:
        await ping.close()
        await ledger.close()
    ms = 1000.0
    return {"stage_p50_ms": round(percentile(stage, 50) * ms, 3),
            "stage_p99_ms": round(percentile(stage, 99) * ms, 3),
            "ping_p50_ms": round(percentile(pings, 50) * ms, 3),
            "stage_over_ping_p50": round(percentile(stage, 50) / percentile(pings, 50), 2),
            "client_cpu_us_per_request_median": round(median(cpu), 1),
            "requests": len(stage)}


def markdown(doc: dict[str, Any]) -> str:
    mem, red = doc["memory"], doc.get("redis")
    lines = ["# Admission stage per request (in-process)", "",
             "| measurement | value | target |", "|---|---:|---|",
             f"| memory ledger: CPU per request (admit + headers + slot + settle), median | "
             f"{mem['cpu_us_per_request_median']:.1f} µs | ≤ 100 µs "
             f"{'✅' if mem['cpu_us_per_request_median'] <= 100 else '❌'} |"]
    if red:
        lines += [f"| Redis ledger: stage wall time p50 / p99 | {red['stage_p50_ms']:.3f} / "
                  f"{red['stage_p99_ms']:.3f} ms | — |",
                  f"| Redis: one PING round trip p50 (same run) | {red['ping_p50_ms']:.3f} ms | — |",
                  f"| Redis: stage ÷ PING, p50 | {red['stage_over_ping_p50']:.2f}× | two round "
                  "trips: admit before forwarding, settle after the answer |",
                  f"| Redis: client CPU per request, median | "
                  f"{red['client_cpu_us_per_request_median']:.1f} µs | — |"]
    lines += ["", f"Rules: 3 key limits, 2 model limits, a priced key budget (6 counters) and a "
              f"deployment slot; usage parsed from a {len(upstream.COMPLETION)}-byte answer. "
              f"Python {doc['machine']['python']}, {doc['machine']['timestamp']}."]
    return "\n".join(lines) + "\n"


async def measure(redis_url: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"benchmark": "admission", "memory": await memory_cpu()}
    if redis_url:
        doc["redis"] = await redis_wall(redis_url)
    doc["machine"] = {"python": platform.python_version(), "uvloop": _version("uvloop"),
                      "timestamp": datetime.now(UTC).isoformat(timespec="seconds")}
    return doc


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.admission", description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                        help="Redis for the Redis part ('' to skip it)")
    args = parser.parse_args()
    import uvloop

    doc = uvloop.run(measure(args.redis_url or None))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "admission-latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    table = markdown(doc)
    (RESULTS / "admission-latest.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
