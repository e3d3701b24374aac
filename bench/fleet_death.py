"""A replica dies under load and comes back: what it costs the clients (issue #11).

The same fleet as ``bench.fleet`` (four simulated H100 replicas behind the real
gateway, tenants with long shared system prompts, streamed answers) at a steady
offered load below saturation. ``--before-s`` seconds in, one replica's process
group gets SIGKILL (a crash: no goodbye to the gateway); ``--dead-s`` seconds
later it is started again on the same port (cold: empty prefix cache); the load
goes on ``--after-s`` seconds more. The gateway runs its production defaults
(probes, breaker, slow start): nothing is tuned for the bench.

Reported per strategy:

* **in flight on the victim at the kill**: its engine's running + waiting
  requests, scraped just before the SIGKILL — the requests that had reached it;
* **errors**, split by when the request started (before the kill, while the
  replica was dead, after its restart) and by kind; the target is that the
  death costs no more errors than the requests in flight on it, and none for
  requests that started after it;
* how long until the gateway's breaker for it opened (``/metrics``), and how
  long after the restart until it answered a request again;
* time to first token p50/p90 in each phase.

Run: part of ``make bench-fleet`` (after the strategies), or alone with
``python -m bench.fleet_death`` (~2 minutes; ``--quick`` ~1 minute).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.fleet import HOST, ROOT, Fleet, Request, body, counters, one, tenant_prompts
from bench.stats import percentile
from inferenceops.routing.engine_metrics import parse_engine_metrics

VICTIM = 2
PHASES = ("before", "dead", "after")


@dataclass
class Timeline:
    """When things happened (perf_counter seconds) and what the victim held at its death."""

    killed: float = 0.0
    restarted: float = 0.0
    in_flight_at_kill: float | None = None
    breaker_open_s: float | None = None
    serving_again_s: float | None = None


async def _text(session: aiohttp.ClientSession, url: str) -> str:
    try:
        async with session.get(url) as resp:
            return await resp.text()
    except (TimeoutError, aiohttp.ClientError):
        return ""


def _breaker_open(text: str) -> bool:
    return re.search(rf'^inferenceops_replica_breaker_state\{{deployment="fleet",'
                     rf'replica="fleet-{VICTIM}"\}} 1$', text, re.M) is not None


async def _kill_and_restart(fleet: Fleet, probe: aiohttp.ClientSession, args: argparse.Namespace,
                            line: Timeline) -> None:
    victim = fleet.sims[VICTIM]
    engine = f"http://{HOST}:{fleet.ports[VICTIM]}/metrics"
    gateway = f"http://{HOST}:{fleet.gateway_port}/metrics"
    await asyncio.sleep(args.before_s)
    load = parse_engine_metrics(await _text(probe, engine))
    victim.kill()
    line.killed = time.perf_counter()
    line.in_flight_at_kill = None if load is None else load.running + load.waiting
    while time.perf_counter() - line.killed < args.dead_s:
        if line.breaker_open_s is None and _breaker_open(await _text(probe, gateway)):
            line.breaker_open_s = time.perf_counter() - line.killed
        await asyncio.sleep(0.05)
    victim.start(ROOT)
    await asyncio.to_thread(victim.wait_ready, 60)
    line.restarted = time.perf_counter()
    while time.perf_counter() - line.restarted < args.after_s:
        answered = counters(await _text(probe, engine)).get("vllm:request_success_total", 0.0)
        if answered > 0:
            line.serving_again_s = time.perf_counter() - line.restarted
            return
        await asyncio.sleep(0.1)


async def drive(fleet: Fleet, args: argparse.Namespace, prompts: list[bytes]) -> dict[str, Any]:
    url = f"http://{HOST}:{fleet.gateway_port}/v1/chat/completions"
    rng = random.Random(f"death-{args.seed}")
    line = Timeline()
    requests: list[Request] = []
    tasks: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=args.drain_s + args.before_s + args.dead_s
                                    + args.after_s + 180)
    async with aiohttp.ClientSession(timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=0)) as session, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as probe:
        loop = asyncio.get_running_loop()
        turn = 0

        def send(measured: bool) -> None:
            nonlocal turn
            tenant = rng.randrange(len(prompts))
            turn += 1
            rec = Request(0 if measured else -1, tenant, time.perf_counter())
            if measured:
                requests.append(rec)
            task = asyncio.create_task(one(session, url, body(prompts[tenant], turn,
                                                              args.max_tokens), rec))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        # Warm-up (not measured): every replica holds some tenants' prompts before the death.
        due = loop.time()
        end = due + args.warmup_s
        while (due := due + rng.expovariate(args.rate)) < end:
            await asyncio.sleep(max(0.0, due - loop.time()))
            send(False)
        chaos = asyncio.create_task(_kill_and_restart(fleet, probe, args, line))
        while not (line.restarted and time.perf_counter() >= line.restarted + args.after_s):
            if chaos.done() and not line.restarted:
                break  # the kill or the restart failed: ``await chaos`` raises it
            due += rng.expovariate(args.rate)
            await asyncio.sleep(max(0.0, due - loop.time()))
            send(True)
        await chaos
        if tasks:
            await asyncio.wait(set(tasks), timeout=args.drain_s)
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return summarize(requests, line)


def _phase(rec: Request, line: Timeline) -> str:
    if rec.started < line.killed:
        return "before"
    return "dead" if rec.started < line.restarted else "after"


def summarize(requests: list[Request], line: Timeline) -> dict[str, Any]:
    phases: dict[str, Any] = {}
    for phase in PHASES:
        mine = [r for r in requests if _phase(r, line) == phase]
        ok = sorted(r.ttft for r in mine if r.error is None and r.ttft is not None)
        kinds: dict[str, int] = {}
        for r in mine:
            if r.error is not None:
                kinds[r.error] = kinds.get(r.error, 0) + 1
        phases[phase] = {"requests": len(mine), "errors": len(mine) - len(ok),
                         "error_kinds": kinds,
                         "ttft_p50_s": percentile(ok, 50) if ok else None,
                         "ttft_p90_s": percentile(ok, 90) if ok else None}
    errors = sum(p["errors"] for p in phases.values())
    return {"phases": phases, "errors": errors,
            "in_flight_at_kill": line.in_flight_at_kill,
            "breaker_open_s": line.breaker_open_s, "serving_again_s": line.serving_again_s,
            "dead_s": line.restarted - line.killed}


def run(strategy: str, args: argparse.Namespace, prompts: list[bytes]) -> dict[str, Any]:
    fleet = Fleet(strategy, tag="death")  # a folder of its own: the strategy runs keep theirs
    try:
        fleet.start()
        print(f"[fleet-death] {strategy}: running", flush=True)
        return asyncio.run(drive(fleet, args, prompts))
    finally:
        fleet.stop()


def targets(results: dict[str, Any]) -> list[str]:
    out = []
    for strategy, r in results.items():
        bound = r["in_flight_at_kill"]
        later = r["phases"]["dead"]["errors"] + r["phases"]["after"]["errors"]
        verdict = ("meets" if bound is not None and r["errors"] <= bound and later == 0
                   else "misses")
        out.append(f"{strategy}: {r['errors']} errors for {bound if bound is not None else '?':g} "
                   f"requests in flight on the killed replica, {later} for requests started "
                   f"after the kill ({verdict} the target: no more errors than its in-flight "
                   "requests, none after)")
    return out


def markdown(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    lines = ["## A replica dies and comes back", "",
             f"Steady {args.rate:g} req/s (same fleet and tenants); fleet-{VICTIM} gets SIGKILL "
             f"{args.before_s:g} s into the measured run and is restarted {args.dead_s:g} s "
             f"later (cold), then {args.after_s:g} s more. Gateway on its defaults.", "",
             "| strategy | in flight on it at the kill | errors (before / dead / after) | "
             "breaker open after | serving again after restart | TTFT p90 ms before / dead / "
             "after |", "|---|---|---|---|---|---|"]
    for strategy, r in results.items():
        ph = r["phases"]
        p90 = " / ".join("—" if ph[p]["ttft_p90_s"] is None else f"{ph[p]['ttft_p90_s'] * 1000:,.0f}"
                         for p in PHASES)
        errs = " / ".join(str(ph[p]["errors"]) for p in PHASES)
        bo = "—" if r["breaker_open_s"] is None else f"{r['breaker_open_s'] * 1000:,.0f} ms"
        sa = "—" if r["serving_again_s"] is None else f"{r['serving_again_s']:.1f} s"
        inflight = "?" if r["in_flight_at_kill"] is None else f"{r['in_flight_at_kill']:g}"
        lines.append(f"| {strategy} | {inflight} | {errs} | {bo} | {sa} | {p90} |")
    lines += [""] + [f"- {t}" for t in targets(results)] + [""]
    return lines


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--death-strategies", default="least_outstanding,prefix_affinity",
                   help="strategies to run the replica death under ('' for none)")
    p.add_argument("--death-rate", dest="rate", type=float, default=5.0,
                   help="offered req/s while a replica dies (below saturation)")
    p.add_argument("--before-s", type=float, default=15.0)
    p.add_argument("--dead-s", type=float, default=10.0)
    p.add_argument("--after-s", type=float, default=15.0)


def main(argv: list[str] | None = None) -> int:
    """The replica death alone: ``bench/results/fleet-death-<stamp>.json|.md``."""
    from bench.fleet import parse_args, write
    args = parse_args(argv)
    prompts = tenant_prompts(args.tenants, args.prompt_words)
    results = {s: run(s, args, prompts) for s in args.death_strategies}
    text = "\n".join(["# Fleet: replica death", "", *markdown(results, args)])
    print(text)
    if not args.no_write:
        stamp = time.strftime("%Y%m%d-%H%M")
        for path in write(f"fleet-death-{stamp}", {"stamp": stamp, "death": results}, text,
                          latest="fleet-death-latest"):
            print(f"[fleet-death] wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
