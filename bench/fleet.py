"""Routing strategies on a simulated GPU fleet: time to first token under rising load (issue #11).

Four simulated engines (``inferenceops simulate``, the ``llama-3.1-8b-h100``
profile: Llama 3.1 8B on one H100 under vLLM, with its prefix cache of 27,136
blocks = 434k tokens) run as separate processes behind the real gateway
(``inferenceops serve``, one worker), one deployment of four replicas. For each
strategy — round_robin, least_outstanding, engine_load, prefix_affinity — the
engines and the gateway are started fresh (cold caches), then:

* **tenants**: ``--tenants`` teams, each with its own long system prompt
  (``--prompt-words`` words, about as many simulator tokens) and short user
  turns; each request picks a tenant at random and streams ``--max-tokens``
  output tokens. All the tenants' prompts together are larger than one
  engine's prefix cache (100 × 12k = 1.2M tokens against 434k) but a quarter of
  them fits: where a tenant's requests land decides whether its prompt is
  prefilled again;
* **warm-up** at the lowest rate (not measured), then **rising offered load**:
  open-loop Poisson arrivals at each rate of ``--rates`` for ``--level-s``
  seconds, without a pause between levels; requests started in a level count
  for it. After the last level the run waits for what is in flight.

Per level and strategy: p50/p90 time to first token (first SSE event through
the gateway), output tokens/s (the engines' ``vllm:generation_tokens_total``
over the level), errors, the engines' own prefix
cache hit rate and, per replica, the requests it answered and its mean
in-engine load (running + waiting, sampled from its ``/metrics`` every 0.5 s),
with max/mean of both. Targets (reported, not asserted): prefix_affinity's p90
TTFT at least 3× lower than round_robin's at the same load near saturation, no
replica above 1.5× the mean load.

Then a replica death (``bench.fleet_death``): at a steady load below
saturation one replica gets SIGKILL and is restarted 10 s later, under
least_outstanding and prefix_affinity; target: no more errors than the requests
in flight on it, none for requests started after the kill.

Run: ``make bench-fleet`` (about 12 minutes) or ``python -m bench.fleet --quick``
(a smoke run, ~1 minute). Writes ``bench/results/fleet-<stamp>.json|.md`` and
``fleet-latest.*``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import procs
from bench.sim_fleet import API_KEY, HOST, MODEL, PROFILE, SimFleet
from bench.stats import percentile
from inferenceops.routing.engine_metrics import parse_engine_metrics

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "fleet"
RESULTS = ROOT / "bench" / "results"
REPLICAS = 4
STRATEGIES = ("round_robin", "least_outstanding", "engine_load", "prefix_affinity")
SAMPLE_S = 0.5


@dataclass
class Request:
    level: int
    tenant: int
    started: float
    ttft: float | None = None
    done: float | None = None
    tokens: int = 0
    error: str | None = None
    headers: float | None = None  # seconds to the response's headers (before any token)
    queue_ms: float | None = None  # the gateway's x-inferenceops-queue-ms: waited for capacity


@dataclass
class Level:
    rate: float
    began: float
    ended: float = 0.0
    samples: dict[str, list[float]] = field(default_factory=dict)  # replica → running + waiting
    counters_before: dict[str, dict[str, float]] = field(default_factory=dict)
    counters_after: dict[str, dict[str, float]] = field(default_factory=dict)


# ---- the workload -------------------------------------------------------------------------------

def tenant_prompts(tenants: int, words: int) -> list[bytes]:
    """Each tenant's system message as JSON (built once): random words, distinct from the start."""
    vocab = [f"{a}{b}" for a in ("al", "be", "co", "de", "ex", "fo", "gu", "hi", "io", "ju")
             for b in ("ram", "sel", "tor", "vin", "lex", "mod", "nar", "pix", "qua", "rod",
                       "sup", "tan", "ul", "vor", "wen", "xy", "yel", "zo", "ark", "bel")]
    out = []
    for t in range(tenants):
        rng = random.Random(f"tenant-{t}")
        text = f"You are the assistant of tenant {t}. " + " ".join(rng.choices(vocab, k=words))
        out.append(orjson.dumps({"role": "system", "content": text}))
    return out


def body(system: bytes, turn: int, max_tokens: int) -> bytes:
    user = orjson.dumps({"role": "user", "content": f"Question {turn}: what should I do next?"})
    return (b'{"model":"' + MODEL.encode() + b'","stream":true,"max_tokens":%d,'
            b'"stream_options":{"include_usage":true},"messages":[%s,%s]}'
            % (max_tokens, system, user))


_USAGE = re.compile(rb'"completion_tokens":(\d+)')


async def one(session: aiohttp.ClientSession, url: str, data: bytes, rec: Request) -> None:
    try:
        async with session.post(url, data=data, headers={"Authorization": f"Bearer {API_KEY}",
                                                         "Content-Type": "application/json"}) as resp:
            rec.headers = time.perf_counter() - rec.started
            queued = resp.headers.get("x-inferenceops-queue-ms")
            rec.queue_ms = float(queued) if queued else 0.0
            if resp.status != 200:
                rec.error = f"status {resp.status}"
                await resp.read()
                return
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                if rec.ttft is None:
                    rec.ttft = time.perf_counter() - rec.started
                if b'"error"' in line:
                    rec.error = "stream error event"
                found = _USAGE.search(line)
                if found:
                    rec.tokens = int(found.group(1))
    except (TimeoutError, aiohttp.ClientError) as exc:
        rec.error = type(exc).__name__
    except asyncio.CancelledError:
        rec.error = "unfinished when the drain ended"
        raise
    finally:
        rec.done = time.perf_counter()


# ---- engine metrics -----------------------------------------------------------------------------

_COUNTER = re.compile(r"^(vllm:(?:prefix_cache_hits_total|prefix_cache_queries_total|"
                      r"request_success_total|generation_tokens_total))\{[^}]*\} ([0-9.e+]+)$", re.M)


def counters(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in _COUNTER.findall(text):
        out[name] = out.get(name, 0.0) + float(value)
    return out


async def read_metrics(session: aiohttp.ClientSession, ports: list[int]) -> dict[str, str]:
    async def get(port: int) -> str:
        try:
            async with session.get(f"http://{HOST}:{port}/metrics") as resp:
                return await resp.text()
        except (TimeoutError, aiohttp.ClientError):
            return ""
    texts = await asyncio.gather(*(get(p) for p in ports))
    return {f"fleet-{i}": t for i, t in enumerate(texts)}


async def sample(session: aiohttp.ClientSession, ports: list[int], levels: list[Level],
                 stop: asyncio.Event) -> None:
    while not stop.is_set():
        texts = await read_metrics(session, ports)
        if levels:
            for replica, text in texts.items():
                load = parse_engine_metrics(text)
                if load is not None:
                    levels[-1].samples.setdefault(replica, []).append(load.running + load.waiting)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_S)


# ---- one strategy -------------------------------------------------------------------------------

class Fleet(SimFleet):
    """Four simulators and a gateway routing over them with one strategy."""

    def __init__(self, strategy: str, tag: str = "") -> None:
        super().__init__(WORK / f"{strategy}{'-' + tag if tag else ''}", REPLICAS, source="bench/fleet.py",
                         deployment=f"    routing: {strategy}\n")
        self.strategy = strategy


async def drive(fleet: Fleet, args: argparse.Namespace, prompts: list[bytes]) -> dict[str, Any]:
    url = f"http://{HOST}:{fleet.gateway_port}/v1/chat/completions"
    rng = random.Random(f"arrivals-{args.seed}")  # the same arrivals for every strategy
    timeout = aiohttp.ClientTimeout(total=args.drain_s + args.level_s * len(args.rates) + 120)
    connector = aiohttp.TCPConnector(limit=0)
    requests: list[Request] = []
    tasks: set[asyncio.Task[None]] = set()
    levels: list[Level] = []
    stop = asyncio.Event()
    turn = 0
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as probe:
        sampler = asyncio.create_task(sample(probe, fleet.ports, levels, stop))
        plan = [(-1, args.rates[0], args.warmup_s)] + [
            (i, rate, args.level_s) for i, rate in enumerate(args.rates)]
        for index, rate, seconds in plan:
            texts = await read_metrics(probe, fleet.ports)
            if index >= 0:
                if levels:
                    levels[-1].ended = time.perf_counter()
                    levels[-1].counters_after = {r: counters(t) for r, t in texts.items()}
                levels.append(Level(rate, time.perf_counter(),
                                    counters_before={r: counters(t) for r, t in texts.items()}))
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            due = loop.time()
            while True:
                due += rng.expovariate(rate)
                if due >= end:
                    break
                await asyncio.sleep(max(0.0, due - loop.time()))
                tenant = rng.randrange(len(prompts))
                turn += 1
                rec = Request(index, tenant, time.perf_counter())
                if index >= 0:
                    requests.append(rec)
                task = asyncio.create_task(one(session, url, body(prompts[tenant], turn,
                                                                  args.max_tokens), rec))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, end - loop.time()))
        texts = await read_metrics(probe, fleet.ports)
        levels[-1].ended = time.perf_counter()
        levels[-1].counters_after = {r: counters(t) for r, t in texts.items()}
        if tasks:
            await asyncio.wait(set(tasks), timeout=args.drain_s)
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stop.set()
        await sampler
    return summarize(levels, requests)


def summarize(levels: list[Level], requests: list[Request]) -> dict[str, Any]:
    out = []
    for index, level in enumerate(levels):
        mine = [r for r in requests if r.level == index]
        ok = [r for r in mine if r.error is None and r.ttft is not None and r.done is not None]
        ttfts = sorted(r.ttft for r in ok if r.ttft is not None)
        seconds = level.ended - level.began
        replicas = sorted(level.counters_after)

        def delta(replica: str, name: str, level: Level = level) -> float:
            return (level.counters_after.get(replica, {}).get(name, 0.0)
                    - level.counters_before.get(replica, {}).get(name, 0.0))

        answered = {r: delta(r, "vllm:request_success_total") for r in replicas}
        load = {r: (sum(s) / len(s) if (s := level.samples.get(r)) else 0.0) for r in replicas}
        hits = sum(delta(r, "vllm:prefix_cache_hits_total") for r in replicas)
        queries = sum(delta(r, "vllm:prefix_cache_queries_total") for r in replicas)
        out.append({
            "offered_rps": level.rate, "requests": len(mine), "answered": len(ok),
            "errors": len(mine) - len(ok),
            "error_kinds": {kind: sum(r.error == kind for r in mine)
                            for kind in sorted({r.error for r in mine if r.error})},
            "ttft_p50_s": percentile(ttfts, 50) if ttfts else None,
            "ttft_p90_s": percentile(ttfts, 90) if ttfts else None,
            # What the engines generated during the level (their own counter), not what was asked.
            "output_tokens_per_s": (sum(delta(r, "vllm:generation_tokens_total") for r in replicas)
                                    / seconds if seconds else 0.0),
            "requested_output_tokens": sum(r.tokens for r in ok),
            "prefix_hit_rate": hits / queries if queries else None,
            "replica_requests": answered, "replica_load": load,
            "requests_max_over_mean": _max_over_mean(answered),
            "load_max_over_mean": _max_over_mean(load),
        })
    return {"levels": out}


def _max_over_mean(values: dict[str, float]) -> float | None:
    mean = sum(values.values()) / len(values) if values else 0.0
    return max(values.values()) / mean if mean > 0 else None


# ---- report -------------------------------------------------------------------------------------

def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:,.0f}"


def markdown(results: dict[str, Any]) -> str:
    cfg = results["config"]
    lines = [f"# Fleet routing benchmark — {results['stamp']}", "",
             f"{REPLICAS} simulated replicas (`{PROFILE}`: Llama 3.1 8B on one H100 under vLLM, "
             "estimated; prefix cache 434k tokens each) behind one gateway worker; "
             f"{cfg['tenants']} tenants, each a ~{cfg['prompt_words']:,}-token system prompt "
             f"and short user turns, {cfg['max_tokens']} output tokens streamed; Poisson arrivals, "
             f"rising offered load ({cfg['level_s']:g} s per level after {cfg['warmup_s']:g} s of "
             f"warm-up). Commit {results['commit']}. Machine: 2 shared cores "
             "(engines, gateway and client on the same machine: simulated GPU time is real time).",
             "", "| strategy | offered req/s | answered | errors | TTFT p50 ms | TTFT p90 ms | "
             "output tok/s | prefix-cache hit | max/mean requests | max/mean load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for strategy, result in results["strategies"].items():
        for level in result["levels"]:
            hit = level["prefix_hit_rate"]
            rq, ld = level["requests_max_over_mean"], level["load_max_over_mean"]
            lines.append(
                f"| {strategy} | {level['offered_rps']:g} | {level['answered']} | "
                f"{level['errors']} | {_ms(level['ttft_p50_s'])} | {_ms(level['ttft_p90_s'])} | "
                f"{level['output_tokens_per_s']:,.0f} | "
                f"{'—' if hit is None else f'{hit:.0%}'} | "
                f"{'—' if rq is None else f'{rq:.2f}'} | {'—' if ld is None else f'{ld:.2f}'} |")
    lines += ["", "## Targets (reported, not asserted)", ""]
    lines += [f"- {line}" for line in results["targets"]]
    lines += ["", "Per-replica requests and load of every level are in the JSON file.", ""]
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[str]:
    strategies = results["strategies"]
    out = []
    if "round_robin" in strategies and "prefix_affinity" in strategies:
        for rr, pa in zip(strategies["round_robin"]["levels"],
                          strategies["prefix_affinity"]["levels"], strict=False):
            if rr["ttft_p90_s"] and pa["ttft_p90_s"]:
                ratio = rr["ttft_p90_s"] / pa["ttft_p90_s"]
                out.append(f"at {rr['offered_rps']:g} req/s: round_robin p90 TTFT / "
                           f"prefix_affinity p90 TTFT = {ratio:.1f}x "
                           f"({'meets' if ratio >= 3 else 'below'} the 3x target)")
    for name, result in strategies.items():
        worst = max((lv["requests_max_over_mean"] or 0.0 for lv in result["levels"]), default=0)
        worst_load = max((lv["load_max_over_mean"] or 0.0 for lv in result["levels"]), default=0)
        out.append(f"{name}: busiest replica at most {worst:.2f}x the mean requests and "
                   f"{worst_load:.2f}x the mean in-engine load over the levels "
                   f"({'within' if max(worst, worst_load) <= 1.5 else 'above'} 1.5x)")
    return out


def write(stem: str, results: dict[str, Any], text: str, latest: str) -> list[Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = json.dumps(results, indent=2) + "\n"
    paths = []
    for name in (stem, latest):
        (RESULTS / f"{name}.json").write_text(data)
        (RESULTS / f"{name}.md").write_text(text)
        paths += [RESULTS / f"{name}.json", RESULTS / f"{name}.md"]
    return paths


# ---- main ---------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from bench import fleet_death
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: small and short")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--tenants", type=int, default=100)
    p.add_argument("--prompt-words", type=int, default=12_000)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--rates", default="3,5,7,9", help="offered requests/s, rising")
    p.add_argument("--level-s", type=float, default=25.0)
    p.add_argument("--warmup-s", type=float, default=20.0)
    p.add_argument("--drain-s", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="print the table, write nothing")
    fleet_death.add_arguments(p)
    args = p.parse_args(argv)
    if args.quick:
        args.tenants, args.prompt_words, args.rates = 24, 3_000, "3,6"
        args.level_s, args.warmup_s, args.drain_s = 6.0, 3.0, 20.0
        args.before_s, args.dead_s, args.after_s = 5.0, 5.0, 6.0
    args.rates = [float(r) for r in str(args.rates).split(",")]
    args.strategies = [s for s in args.strategies.split(",") if s]
    args.death_strategies = [s for s in args.death_strategies.split(",") if s]
    return args


def main(argv: list[str] | None = None) -> int:
    from bench import fleet_death
    args = parse_args(argv)
    prompts = tenant_prompts(args.tenants, args.prompt_words)
    stamp = time.strftime("%Y%m%d-%H%M")
    commit = procs.subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                  capture_output=True, text=True).stdout.strip()
    results: dict[str, Any] = {"stamp": stamp, "commit": commit, "profile": PROFILE,
                               "replicas": REPLICAS, "config": {
                                   k: v for k, v in vars(args).items() if k != "no_write"},
                               "strategies": {}}
    started = time.monotonic()
    for strategy in args.strategies:
        fleet = Fleet(strategy)
        try:
            fleet.start()
            print(f"[fleet] {strategy}: running", flush=True)
            results["strategies"][strategy] = asyncio.run(drive(fleet, args, prompts))
        finally:
            fleet.stop()
        for level in results["strategies"][strategy]["levels"]:
            print(f"[fleet]   {level['offered_rps']:g} req/s: p50 {_ms(level['ttft_p50_s'])} ms, "
                  f"p90 {_ms(level['ttft_p90_s'])} ms, errors {level['errors']}, "
                  f"hit {level['prefix_hit_rate']}", flush=True)
    results["death"] = {s: fleet_death.run(s, args, prompts) for s in args.death_strategies}
    results["wall_s"] = round(time.monotonic() - started, 1)
    results["targets"] = targets(results)
    text = markdown(results)
    if results["death"]:
        text += "\n" + "\n".join(fleet_death.markdown(results["death"], args))
    print(text)
    if not args.no_write:
        for path in write(f"fleet-{results['stamp']}", results, text, latest="fleet-latest"):
            print(f"[fleet] wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

