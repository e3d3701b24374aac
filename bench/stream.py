"""What a forwarder adds to a whole stream: 20 chunks, 2 ms apart, at 1 client.

The mock upstream's paced model (``bench.upstream.PACED_MODEL``) streams
``PACED_CHUNKS`` content chunks ``PACED_GAP_S`` apart, as a token generator
does; asked for usage (``stream_options.include_usage``, which the gateway
always asks for and hides again when the client did not), it sends a usage
chunk before ``[DONE]``. One number per request: the time from writing the
request to having read the chunk that holds ``data: [DONE]`` — what a client
waits for the whole answer. The same request goes DIRECT to the upstream,
THROUGH the gateway (its whole filter chain: error redaction, usage
extraction, the usage chunk hidden) and, with ``--reference``, through both
minimal forwarders (``bench.reference`` over the gateway's own
``engines.http1`` and over aiohttp).

Blocks alternate the sides (ABBA order over all of them), one keep-alive
connection per side, the collector paused while a block runs. For each block
the median whole-stream time per side; the added total is side − direct in
that block; the report takes the median over blocks. A block during which
other processes used more than ``--noise-threshold`` of the cores is run
again (bounded), as the wrk blocks are.

``python -m bench.stream`` runs this phase alone (upstream, gateway and both
references started here), for iterating on the streaming path: ``--runs N``
measures N times with the same servers, ``--write`` records
``bench/results/stream-latest.{json,md}`` (every run, the median of runs, the
machine and commit) and a dated copy.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from bench import client, upstream
from bench.stats import median, ms, percentile

if TYPE_CHECKING:
    from bench.run import Bench

PACED_BODY: bytes = orjson.dumps({
    "model": upstream.PACED_MODEL, "max_tokens": upstream.PACED_CHUNKS, "stream": True,
    "messages": [{"role": "user", "content": "Stream twenty tokens to the benchmark."}]})
#: The whole answer a client must read from every side: the usage chunk is never there,
#: because the client did not ask for it (the gateway asks, and hides it).
EXPECTED: bytes = b"".join((*upstream.PACED_STREAM_CHUNKS, upstream.DONE))
LABEL = (f"Stream total added, {upstream.PACED_CHUNKS} chunks × "
         f"{upstream.PACED_GAP_S * 1000:g} ms")


def stream_sides(bench: Bench) -> tuple[str, ...]:
    """direct, gateway, a baseline gateway if one runs, then the reference forwarders that
    run (by their client)."""
    return ("direct", "gateway", *bench.baseline_sides, *bench.reference_sides)


def sanity(bench: Bench) -> None:
    """Every side must hand the client the paced stream byte for byte (usage chunk hidden)."""
    async def one(side: str) -> client.Exchange:
        conn = await client.Connection.open(bench.host, bench.ports[side],
                                            bench.request(side, PACED_BODY))
        try:
            return await conn.exchange(keep_body=True)
        finally:
            await conn.close()

    for side in stream_sides(bench):
        got = bench.run_async(one(side))
        if got.body != EXPECTED:
            raise client.ProtocolError(f"{side}: unexpected paced SSE body {got.body[-300:]!r}")
        if got.done_s is None:
            raise client.ProtocolError(f"{side}: no [DONE] in the paced stream")
    bench.gateway_requests += 1


def measure(bench: Bench, blocks: int, count: int, warmup: int) -> dict[str, Any]:
    """Alternating blocks of ``count`` sequential paced streams per side; see the module doc."""
    sides = stream_sides(bench)
    clients = {side: bench.reference_clients[side] for side in bench.reference_sides}
    names = [_label(side, clients) for side in sides]
    ncpu = os.cpu_count() or 1
    threshold = bench.args.noise_threshold

    async def run_blocks() -> tuple[list[dict[str, client.Samples]], list[dict[str, Any]]]:
        conns = {s: await client.Connection.open(bench.host, bench.ports[s],
                                                 bench.request(s, PACED_BODY)) for s in sides}
        kept: list[dict[str, client.Samples]] = []
        discarded: list[dict[str, Any]] = []
        retries = blocks
        try:
            for side in sides:  # the connections and both pools warm, not timed
                await client.sequential(conns[side], warmup, client.Samples())
            b = 0
            while len(kept) < blocks:
                cpu0 = bench.cpu_snapshot(self_cpu=True)
                started = time.perf_counter()
                block: dict[str, client.Samples] = {}
                for side in (sides if b % 2 == 0 else sides[::-1]):
                    samples = client.Samples()
                    gc.collect()
                    gc.disable()
                    try:
                        await client.sequential(conns[side], count, samples)
                    finally:
                        gc.enable()
                    block[side] = samples
                cpu = bench.cpu_delta(cpu0, time.perf_counter() - started, self_cpu=True)
                other = 100.0 * cpu["other_cpu_s"] / (cpu["wall_s"] * ncpu)
                b += 1
                if other > threshold and retries > 0:
                    retries -= 1
                    discarded.append({"other_pct": round(other, 1),
                                      **_block_row(block, sides, clients)})
                    bench.log(f"  stream block {b}: other processes {other:.0f}%; run again")
                    continue
                if other > threshold:
                    bench.warnings.append(f"stream block {len(kept) + 1}: other processes used "
                                          f"{other:.0f}% of all cores (retries exhausted)")
                kept.append(block)
                row = _block_row(block, sides, clients)
                bench.log(f"  stream block {len(kept)}/{blocks}: " + ", ".join(
                    f"{n} +{row[f'{n}_added_ms']:.2f}" for n in names[1:])
                    + f" ms (direct {row['direct_p50_ms']:.2f} ms), other {other:.0f}%")
        finally:
            for conn in conns.values():
                await conn.close()
        return kept, discarded

    per_block, discarded = bench.run_async(run_blocks())
    bench.gateway_requests += warmup + blocks * count + len(discarded) * count
    return summarise(per_block, sides, discarded, clients)


def _label(side: str, clients: dict[str, str]) -> str:
    """A reference side by its client ("reference_http1", "reference_aiohttp") in the results."""
    return f"reference_{clients[side]}" if side in clients else side


def _block_row(block: dict[str, client.Samples], sides: tuple[str, ...],
               clients: dict[str, str]) -> dict[str, float]:
    row: dict[str, float] = {}
    for side in sides:
        name = _label(side, clients)
        row[f"{name}_p50_ms"] = ms(percentile(block[side].dones, 50))
        row[f"{name}_first_chunk_p50_ms"] = ms(percentile(block[side].first_chunks, 50))
    for side in sides[1:]:
        name = _label(side, clients)
        row[f"{name}_added_ms"] = round(row[f"{name}_p50_ms"] - row["direct_p50_ms"], 3)
        row[f"{name}_first_chunk_added_ms"] = round(
            row[f"{name}_first_chunk_p50_ms"] - row["direct_first_chunk_p50_ms"], 3)
    return row


def summarise(per_block: list[dict[str, client.Samples]], sides: tuple[str, ...],
              discarded: list[dict[str, Any]], clients: dict[str, str]) -> dict[str, Any]:
    """Medians over blocks of each side's added total (and first chunk); pooled percentiles.

    ``<side>_added_ms`` is the median over blocks of (side p50 − direct p50) in the block;
    ``gateway_vs_aiohttp`` and ``gateway_vs_http1`` divide the gateway's by a reference's.
    """
    rows = [_block_row(block, sides, clients) for block in per_block]
    names = [_label(side, clients) for side in sides]
    out: dict[str, Any] = {
        "metric": "request written → chunk holding data: [DONE] read, 1 client",
        "chunks": upstream.PACED_CHUNKS, "gap_ms": upstream.PACED_GAP_S * 1000,
        "blocks_kept": len(rows),
        "streams_per_side": sum(len(b["direct"].dones) for b in per_block),
        "sides": names,
    }
    for side, name in zip(sides, names, strict=True):
        pooled = [v for b in per_block for v in b[side].dones]
        out[f"{name}_p50_ms"] = ms(percentile(pooled, 50))
        out[f"{name}_p90_ms"] = ms(percentile(pooled, 90))
    for name in names[1:]:
        out[f"{name}_added_ms"] = round(median([r[f"{name}_added_ms"] for r in rows]), 3)
        out[f"{name}_first_chunk_added_ms"] = round(
            median([r[f"{name}_first_chunk_added_ms"] for r in rows]), 3)
    for client_name in ("aiohttp", "http1"):
        ref = out.get(f"reference_{client_name}_added_ms")
        if ref is not None:
            out[f"gateway_vs_{client_name}"] = (round(out["gateway_added_ms"] / ref, 3)
                                                if ref > 0 else None)
    if "gateway_base" in names:  # per block: both gateways ran back to back in it
        out["gateway_minus_base_ms"] = round(median(
            [r["gateway_added_ms"] - r["gateway_base_added_ms"] for r in rows]), 3)
    out["blocks"] = rows
    out["discarded_blocks"] = discarded
    return out


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of ``measure`` (same servers): each run's figures and their medians.

    Each run's ratio is taken within that run (its blocks alternate the sides); the
    summary gives the median over runs of every side's added total and of the ratios.
    """
    names = runs[0]["sides"]
    summary: dict[str, Any] = {"runs": len(runs), "sides": names}
    for name in names[1:]:
        for key in (f"{name}_added_ms", f"{name}_first_chunk_added_ms"):
            summary[key] = round(median([r[key] for r in runs]), 3)
    for client_name in ("aiohttp", "http1"):
        ratios = [r.get(f"gateway_vs_{client_name}") for r in runs]
        known = [float(x) for x in ratios if x is not None]
        if known and len(known) == len(ratios):
            summary[f"gateway_vs_{client_name}"] = round(median(known), 3)
    if "gateway_base" in names:
        summary["gateway_minus_base_ms"] = round(median([r["gateway_minus_base_ms"]
                                                         for r in runs]), 3)
    ratio = summary.get("gateway_vs_aiohttp")
    summary["target_met"] = None if ratio is None else ratio <= 1.0
    summary["runs_meeting_target"] = sum(1 for r in runs if (r.get("gateway_vs_aiohttp") or 2) <= 1)
    return summary


def markdown(doc: dict[str, Any]) -> str:
    """A short table: per run and the median, what each side adds to a whole stream."""
    runs, summary, machine = doc["runs"], doc["summary"], doc["machine"]
    names = summary["sides"][1:]
    head = ["run", "direct p50 (ms)", *(f"{n} added (ms)" for n in names),
            "gateway ÷ aiohttp", "gateway ÷ http1", "blocks (re-run)"]
    lines = [f"# Whole-stream overhead: {LABEL}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def ratio(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}×"

    for i, run in enumerate(runs, 1):
        lines.append("| " + " | ".join([
            str(i), f"{run['direct_p50_ms']:.2f}",
            *(f"+{run[f'{n}_added_ms']:.3f}" for n in names),
            ratio(run.get("gateway_vs_aiohttp")), ratio(run.get("gateway_vs_http1")),
            f"{run['blocks_kept']} ({len(run['discarded_blocks'])})"]) + " |")
    lines.append("| " + " | ".join([
        "**median**", "", *(f"**+{summary[f'{n}_added_ms']:.3f}**" for n in names),
        f"**{ratio(summary.get('gateway_vs_aiohttp'))}**",
        f"**{ratio(summary.get('gateway_vs_http1'))}**", ""]) + " |")
    met = summary.get("target_met")
    verdict = "—" if met is None else ("✅ met" if met else "❌ not met")
    lines += ["", f"Target (issue 9): the gateway adds no more to a whole stream than a bare "
              f"granian + aiohttp forwarder (gateway ÷ aiohttp ≤ 1, median of runs): {verdict} "
              f"({summary['runs_meeting_target']} of {summary['runs']} runs met it).", "",
              f"Added = median over {runs[0]['blocks_kept']} alternating blocks of (side p50 − "
              f"direct p50), {runs[0]['streams_per_side']} streams a side per run; request "
              "written → the chunk holding `data: [DONE]` read, 1 client, keep-alive. The "
              "gateway asks the upstream for usage and hides that chunk again (usage extraction "
              "and the whole filter chain on), with admission as in `make bench`. Sides: "
              + ", ".join(summary["sides"]) + " (`bench/stream.py`, `bench/reference.py`).", "",
              f"Machine: {machine['nproc']} cores ({machine['cpu_model']}), Python "
              f"{machine['python']}, granian {machine['packages'].get('granian')}, aiohttp "
              f"{machine['packages'].get('aiohttp')}; commit {machine['git_commit'][:12]}"
              f"{' (dirty tree)' if machine['git_dirty'] else ''}; load average at start "
              f"{' '.join(machine['loadavg_at_start'])}; {machine['timestamp']}. "
              f"Command: `{doc['command']}`."]
    if doc.get("warnings"):
        lines += ["", "Warnings: " + "; ".join(doc["warnings"])]
    return "\n".join(lines) + "\n"


def write(doc: dict[str, Any], results_dir: Path) -> list[Path]:
    """``stream-latest.{json,md}`` and a dated copy of each."""
    from datetime import datetime

    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(doc["machine"]["timestamp"]).strftime("%Y%m%d-%H%M")
    paths = []
    for name in ("stream-latest", f"stream-{stamp}"):
        for suffix, data in ((".json", orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"),
                             (".md", markdown(doc).encode())):
            path = results_dir / f"{name}{suffix}"
            path.write_bytes(data)
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """This phase alone: ``python -m bench.stream [--runs N] [--blocks N] [--count N] [--write]
    [bench.run options]``."""
    import argparse

    from bench import procs, run, summary
    from bench.plans import FULL

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--runs", type=int, default=1,
                       help="measure this many times with the same servers (each run's ratio "
                       "within the run; the summary is the median of runs)")
    extra.add_argument("--blocks", type=int, default=FULL.stream_blocks)
    extra.add_argument("--count", type=int, default=FULL.stream_requests)
    extra.add_argument("--write", action="store_true",
                       help="also write bench/results/stream-latest.{json,md} (and a dated copy)")
    mine, rest = extra.parse_known_args(argv)
    args = run.parse_args(["--reference", *rest])
    bench = run.Bench(args, FULL)
    machine = summary.machine_info()
    runs: list[dict[str, Any]] = []
    try:
        bench.start()
        sanity(bench)
        for i in range(mine.runs):
            if mine.runs > 1:
                bench.log(f"run {i + 1}/{mine.runs}")
            runs.append(measure(bench, mine.blocks, mine.count, FULL.stream_warmup))
    except (procs.StartupError, client.ProtocolError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        bench.stop()
    doc = {"metric": runs[0]["metric"], "command": "python -m bench.stream " + " ".join(
        argv if argv is not None else sys.argv[1:]), "machine": machine,
        "summary": combine(runs), "runs": runs, "warnings": bench.warnings}
    print(orjson.dumps({k: v for k, v in doc["summary"].items()},
                       option=orjson.OPT_INDENT_2).decode())
    if mine.write:
        for path in write(doc, args.results_dir):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
