"""A large batch beside steady interactive traffic on a simulated fleet (issue #12, dispatch).

Simulated engines (``inferenceops simulate``, the ``llama-3.1-8b-h100`` profile: Llama
3.1 8B on one H100 under vLLM, ``max_num_seqs`` 256) run as separate processes behind
the real gateway (``inferenceops serve``, one worker, SQLite: its in-process batch
executor), one deployment routed by engine load (so the fleet's ``/metrics`` are
scraped, every 0.5 s, and the batch dispatcher reads them). Then:

1. **without the batch**: a steady interactive load — open-loop Poisson arrivals at
   ``--rate`` req/s, each a ~``--prompt-words``-token prompt of its own (no prefix cache
   help) streaming ``--max-tokens`` tokens — for ``--baseline-s`` seconds;
2. **with the batch**: a ``--lines``-request batch (chat completions, ``--batch-tokens``
   output tokens each, system prompts from ``--prefixes`` shared ones) is uploaded and
   created through the Files and Batch APIs, and the same interactive load runs until
   the batch is ``completed``.

Reported: interactive p50/p90/p99 time to first token (first SSE event through the
gateway) in each phase and the ratio of the p99s (target ≤ 1.2x); the fleet's busy
fraction while the batch ran — running sequences / (replicas × 256), sampled from the
engines' ``/metrics`` every 0.5 s, from the batch's creation until it is done (target
≥ 90%), mean and over the middle 80% of the run (ramp-up and the last stragglers out);
batch lines/s and errors. Targets are reported, not asserted.

Run: ``make bench-batch`` (20,000 lines; ~10 minutes) or ``python -m bench.batch --quick``
(~1 minute). Writes ``bench/results/batch-<stamp>.json|.md`` and ``batch-latest.*``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import procs
from bench.fleet import Request, one, read_metrics
from bench.sim_fleet import API_KEY, HOST, MODEL, PROFILE, SimFleet
from bench.stats import percentile
from inferenceops.routing.engine_metrics import parse_engine_metrics

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "batch"
RESULTS = ROOT / "bench" / "results"
MAX_NUM_SEQS = 256  # the profile's
SAMPLE_S = 0.5
_VOCAB = [f"{a}{b}" for a in ("al", "be", "co", "de", "ex", "fo", "gu", "hi", "io", "ju")
          for b in ("ram", "sel", "tor", "vin", "lex", "mod", "nar", "pix", "qua", "rod")]


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choices(_VOCAB, k=count))


def interactive_body(rng: random.Random, n: int, args: argparse.Namespace) -> bytes:
    doc = {"model": MODEL, "stream": True, "max_tokens": args.max_tokens,
           "stream_options": {"include_usage": True},
           "messages": [{"role": "user", "content": f"Request {n}: " + words(rng, args.prompt_words)}]}
    return orjson.dumps(doc)


def batch_file(args: argparse.Namespace) -> bytes:
    rng = random.Random(f"batch-{args.seed}")
    systems = [f"You label documents for project {p}. " + words(rng, 400)
               for p in range(args.prefixes)]
    out = []
    for i in range(args.lines):
        body = {"model": MODEL, "max_tokens": args.batch_tokens, "messages": [
            {"role": "system", "content": systems[i % args.prefixes]},
            {"role": "user", "content": f"Document {i}: " + words(rng, 60)}]}
        out.append(orjson.dumps({"custom_id": f"doc-{i}", "method": "POST",
                                 "url": "/v1/chat/completions", "body": body}))
    return b"\n".join(out) + b"\n"


class Fleet(SimFleet):
    """The simulated replicas (engine_load routing, capacity = their slots) and a gateway whose
    batch executor may keep all of them busy."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(WORK, args.replicas, source="bench/batch.py", deployment=(
            f"    routing: engine_load\n    capacity: {args.replicas * MAX_NUM_SEQS}\n"
            f"    scheduling_policy: {args.scheduling_policy}\n"),
            sim_args=("--scheduling-policy", args.scheduling_policy), env={
                "INFERENCEOPS_LOG_LEVEL": "info", "INFERENCEOPS_ENGINE_METRICS_INTERVAL_S": "0.5",
                "INFERENCEOPS_BATCH_CONCURRENCY": str(min(1024, args.replicas * MAX_NUM_SEQS)),
                "INFERENCEOPS_BATCH_CLAIM": "128", "INFERENCEOPS_BATCH_POLL_S": "0.5",
                "INFERENCEOPS_FILES_MAX_LINES": str(max(50_000, args.lines))})


async def interactive(session: aiohttp.ClientSession, url: str, args: argparse.Namespace,
                      stop: asyncio.Event, requests: list[Request], seed: str) -> None:
    """Poisson arrivals at ``args.rate`` until ``stop``; waits for what it started."""
    rng = random.Random(seed)
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    due = loop.time()
    n = 0
    while not stop.is_set():
        due += rng.expovariate(args.rate)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, due - loop.time()))
        if stop.is_set():
            break
        n += 1
        rec = Request(0, 0, time.perf_counter())
        requests.append(rec)
        task = asyncio.create_task(one(session, url, interactive_body(rng, n, args), rec))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks), timeout=60)


async def sample_busy(probe: aiohttp.ClientSession, ports: list[int], stop: asyncio.Event,
                      out: list[tuple[float, float, float]]) -> None:
    """(time, running, waiting) summed over the fleet, every SAMPLE_S."""
    while not stop.is_set():
        texts = await read_metrics(probe, ports)
        loads = [parse_engine_metrics(t) for t in texts.values()]
        out.append((time.perf_counter(), sum(x.running for x in loads if x),
                    sum(x.waiting for x in loads if x)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_S)


def ttft(requests: list[Request]) -> dict[str, Any]:
    ok = sorted(r.ttft for r in requests if r.error is None and r.ttft is not None)
    kinds: dict[str, int] = {}
    for r in requests:
        if r.error is not None:
            kinds[r.error] = kinds.get(r.error, 0) + 1
    answered = [r for r in requests if r.error is None and r.ttft is not None]
    # Where a first token's time went: to the response's headers (the gateway's own work, its
    # wait for capacity, the engine accepting) and after them (the engine's queue and prefill).
    headers = sorted(r.headers for r in answered if r.headers is not None)
    after = sorted(r.ttft - r.headers for r in answered if r.headers is not None
                   and r.ttft is not None)
    queued = sorted((r.queue_ms or 0.0) / 1000.0 for r in answered)
    return {"requests": len(requests), "answered": len(ok), "errors": len(requests) - len(ok),
            "error_kinds": kinds,
            **{f"ttft_p{p}_s": percentile(ok, p) if ok else None for p in (50, 90, 99)},
            **{f"{name}_p{p}_s": percentile(values, p) if values else None
               for name, values in (("headers", headers), ("after_headers", after),
                                    ("gateway_queue", queued)) for p in (50, 99)}}


async def run_batch(session: aiohttp.ClientSession, base: str, content: bytes,
                    deadline_s: float) -> tuple[str, dict[str, Any], float, float]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    form.add_field("file", content, filename="batch.jsonl", content_type="application/jsonl")
    async with session.post(f"{base}/v1/files", data=form, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        file_id = (await resp.json())["id"]
    async with session.post(f"{base}/v1/batches", headers=headers, json={
            "input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": "24h"}) as resp:
        assert resp.status == 200, await resp.text()
        batch = await resp.json()
    started = time.perf_counter()
    end = started + deadline_s
    while time.perf_counter() < end:
        await asyncio.sleep(1.0)
        async with session.get(f"{base}/v1/batches/{batch['id']}", headers=headers) as resp:
            batch = await resp.json()
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            break
        if int(time.perf_counter() - started) % 10 == 0:
            print(f"[batch]   {time.perf_counter() - started:.0f} s: {batch['status']} "
                  f"{batch.get('request_counts')}", flush=True)
    return batch["id"], batch, started, time.perf_counter()


def busy_summary(samples: list[tuple[float, float, float]], began: float, ended: float,
                 slots: int) -> dict[str, Any]:
    inside = [s for s in samples if began <= s[0] <= ended]
    fractions = [s[1] / slots for s in inside]
    k = len(fractions) // 10
    middle = fractions[k:len(fractions) - k] if len(fractions) >= 10 else fractions
    return {"samples": len(fractions),
            "busy_mean": sum(fractions) / len(fractions) if fractions else None,
            "busy_middle80_mean": sum(middle) / len(middle) if middle else None,
            "busy_p10": percentile(sorted(fractions), 10) if fractions else None,
            "waiting_mean": (sum(s[2] for s in inside) / len(inside)) if inside else None,
            "samples_with_queue": sum(s[2] > 0 for s in inside)}


async def drive(fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    base = f"http://{HOST}:{fleet.gateway_port}"
    url = f"{base}/v1/chat/completions"
    content = batch_file(args)
    slots = len(fleet.ports) * MAX_NUM_SEQS
    timeout = aiohttp.ClientTimeout(total=900)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) \
            as session, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as probe:
        samples: list[tuple[float, float, float]] = []
        sampling = asyncio.Event()
        sampler = asyncio.create_task(sample_busy(probe, fleet.ports, sampling, samples))
        # warm-up (not measured), then the baseline
        warm: list[Request] = []
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(args.warmup_s, stop.set)
        await interactive(session, url, args, stop, warm, "warm")
        alone: list[Request] = []
        stop = asyncio.Event()
        began_alone = time.perf_counter()
        asyncio.get_running_loop().call_later(args.baseline_s, stop.set)
        await interactive(session, url, args, stop, alone, "load")
        ended_alone = time.perf_counter()
        # the batch beside the same load
        beside: list[Request] = []
        stop = asyncio.Event()
        load = asyncio.create_task(interactive(session, url, args, stop, beside, "load"))
        batch_id, batch, began, ended = await run_batch(session, base, content, args.batch_limit_s)
        stop.set()
        await load
        sampling.set()
        await sampler
    counts = batch.get("request_counts", {})
    seconds = ended - began
    return {"without_batch": {**ttft(alone), **busy_summary(samples, began_alone, ended_alone,
                                                            slots)},
            "with_batch": {**ttft(beside), **busy_summary(samples, began, ended, slots)},
            "batch": {"id": batch_id, "status": batch["status"], "lines": args.lines,
                      "completed": counts.get("completed"), "failed": counts.get("failed"),
                      "seconds": round(seconds, 1),
                      "lines_per_s": round((counts.get("completed") or 0) / seconds, 1)},
            "slots": slots}


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v * 1000:,.0f}"


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"


def targets(r: dict[str, Any]) -> list[str]:
    a, b = r["without_batch"], r["with_batch"]
    out = []
    if a["ttft_p99_s"] and b["ttft_p99_s"]:
        ratio = b["ttft_p99_s"] / a["ttft_p99_s"]
        r["p99_ratio"] = round(ratio, 3)
        out.append(f"interactive p99 TTFT with the batch / without = {ratio:.2f}x "
                   f"({'meets' if ratio <= 1.2 else 'misses'} the ≤1.2x target)")
    busy = b["busy_mean"]
    if busy is not None:
        out.append(f"fleet busy while the batch ran: mean {busy:.1%}, middle 80% of the run "
                   f"{_pct(b['busy_middle80_mean'])} "
                   f"({'meets' if busy >= 0.9 else 'misses'} the ≥90% target on the mean)")
    return out


def markdown(r: dict[str, Any]) -> str:
    cfg = r["config"]
    lines = [f"# Batch beside interactive traffic — {r['stamp']}", "",
             f"{cfg['replicas']} simulated replicas (`{PROFILE}`, estimated; max_num_seqs "
             f"{MAX_NUM_SEQS}, {r['slots']} slots) behind one gateway worker (SQLite, in-process "
             "batch executor, routing `engine_load`, engines scraped every 0.5 s; engines "
             f"scheduling `{cfg.get('scheduling_policy', 'fcfs')}`). Interactive: "
             f"Poisson {cfg['rate']:g} req/s, ~{cfg['prompt_words']}-token prompts of their own, "
             f"{cfg['max_tokens']} tokens streamed. Batch: {cfg['lines']:,} chat lines, "
             f"{cfg['batch_tokens']} output tokens each, {cfg['prefixes']} shared system prompts "
             f"(~400 tokens). Commit {r['commit']}. Machine: 2 shared cores (engines, gateway and "
             "client on it: simulated GPU time is real time)." +
             (" **Quick run** (reduced sizes)." if cfg["quick"] else ""), "",
             "| phase | interactive requests | errors | TTFT p50 ms | p90 ms | p99 ms | "
             "fleet busy (mean) | busy (middle 80%) | busy p10 | mean engine queue |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, key in (("without batch", "without_batch"), ("with batch", "with_batch")):
        p = r[key]
        lines.append(f"| {name} | {p['requests']} | {p['errors']} | {_ms(p['ttft_p50_s'])} | "
                     f"{_ms(p['ttft_p90_s'])} | {_ms(p['ttft_p99_s'])} | {_pct(p['busy_mean'])} | "
                     f"{_pct(p['busy_middle80_mean'])} | {_pct(p['busy_p10'])} | "
                     f"{_num(p['waiting_mean'])} |")
    lines += ["", "Where the first token's time went (p50 / p99 ms): to the response's headers "
              "(gateway work, its wait for capacity, the engine accepting), of which waiting in "
              "the gateway's gate (`x-inferenceops-queue-ms`), and from the headers to the first "
              "token (the engine's queue, its step in progress and the prefill).", "",
              "| phase | to headers | of which the gate | headers → first token |",
              "|---|---|---|---|"]
    for name, key in (("without batch", "without_batch"), ("with batch", "with_batch")):
        p = r[key]
        lines.append(" | ".join([f"| {name}", *(
            f"{_ms(p.get(f'{part}_p50_s'))} / {_ms(p.get(f'{part}_p99_s'))}"
            for part in ("headers", "gateway_queue", "after_headers"))]) + " |")
    b = r["batch"]
    lines += ["", f"Batch: {b['status']}, {b['completed']} completed, {b['failed']} failed of "
              f"{b['lines']:,} in {b['seconds']} s ({b['lines_per_s']} lines/s).", "",
              "## Targets (reported, not asserted)", ""]
    lines += [f"- {t}" for t in r["targets"]] + [""]
    return "\n".join(lines)


def write(r: dict[str, Any]) -> list[Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    text, data = markdown(r), json.dumps(r, indent=2) + "\n"
    paths = []
    for stem in (f"batch-{r['stamp']}", "batch-latest"):
        for suffix, body in ((".json", data), (".md", text)):
            (RESULTS / f"{stem}{suffix}").write_text(body)
            paths.append(RESULTS / f"{stem}{suffix}")
    return paths


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--lines", type=int, default=20_000)
    p.add_argument("--batch-tokens", type=int, default=384)
    p.add_argument("--prefixes", type=int, default=20)
    p.add_argument("--rate", type=float, default=4.0, help="interactive requests/s")
    p.add_argument("--prompt-words", type=int, default=1500)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--warmup-s", type=float, default=10.0)
    p.add_argument("--baseline-s", type=float, default=90.0)
    p.add_argument("--batch-limit-s", type=float, default=1200.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scheduling-policy", choices=("priority", "fcfs"), default="priority",
                   help="the engines' queue order (vLLM's flag) and the deployment's "
                   "scheduling_policy: with priority, batch lines queue behind interactive ones")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.lines, args.baseline_s, args.warmup_s, args.batch_tokens = 1_500, 25.0, 5.0, 192
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M")
    commit = procs.subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                  capture_output=True, text=True).stdout.strip()
    fleet = Fleet(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the fleet on a timeout's kill
    started = time.monotonic()
    try:
        fleet.start()
        print(f"[batch] fleet up: {args.replicas} replicas; baseline, then {args.lines:,} lines",
              flush=True)
        result = asyncio.run(drive(fleet, args))
    finally:
        fleet.stop()
    result.update(stamp=stamp, commit=commit, profile=PROFILE,
                  config={k: v for k, v in vars(args).items() if k != "no_write"},
                  wall_s=round(time.monotonic() - started, 1))
    result["targets"] = targets(result)
    print(markdown(result))
    if not args.no_write:
        for path in write(result):
            print(f"[batch] wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
