"""The gateway of today against the gateway of an earlier commit, in the same run.

``python -m bench.versus --base <commit>`` (``make bench-versus BASE=<commit>``) answers
"did this code get slower than that code?" on *this* machine: absolute numbers move between
machines (the same reference proxy used 0.043 ms of CPU a request on one 2-core VM and
0.105 ms on another), so a ratio recorded on another day is only a rough guide. Here
both gateways run side by side against the same mock upstream, beside the reference
proxy (``bench.reference``, the floor of the stack), with the same platform file (the
foundation benchmark's: admission on, limits, a budget, prices):

* **throughput blocks**: wrk at 64 clients for ``--seconds`` against each server in turn,
  the order rotating every block (so drifts in machine load reach every side); per block
  requests/s and the server tree's CPU per request; the median over blocks per side, and
  the median of the per-block ratios head ÷ base (paired: the two ran seconds apart);
* **latency blocks**: ``--count`` back-to-back requests on one keep-alive connection per
  side, rotating too; p50 per block minus the mock upstream's own (``direct``), median.

The base commit's ``src/`` is extracted with ``git archive`` into ``bench/.work/versus/``
and run with ``PYTHONPATH`` pointing at it (same virtualenv: a base that needs packages the
lock no longer has will not start, and says so). Its store is its own fresh data folder.
Results: ``bench/results/versus-<base>-<stamp>.{json,md}`` and ``versus-latest.*``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import orjson

from bench import client, procs, wrk
from bench import run as foundation
from bench.plans import FULL
from bench.stats import median, ms, percentile
from bench.summary import machine_info

ROOT = foundation.ROOT
WORK = foundation.WORK / "versus"
HOST = foundation.HOST


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.versus", description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--blocks", type=int, default=8, help="rotations of every side (default 8)")
    parser.add_argument("--seconds", type=float, default=6.0, help="one wrk block (default 6)")
    parser.add_argument("--count", type=int, default=1500,
                        help="sequential requests per latency block (default 1500)")
    parser.add_argument("--results-dir", type=Path, default=foundation.RESULTS)
    return parser.parse_args(argv)


def extract(revision: str) -> tuple[str, Path]:
    """``src/`` of ``revision`` under ``WORK/<sha>``; returns (short sha, that folder)."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{revision}^{{commit}}"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout.strip()
    target = WORK / sha[:12]
    if not (target / "src").is_dir():
        archive = subprocess.run(["git", "archive", "--format=tar", sha, "src"], cwd=ROOT,
                                 check=True, capture_output=True).stdout
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
    return sha[:12], target


class Versus:
    """The foundation bench's upstream, reference and gateway, plus the base commit's gateway."""

    def __init__(self, args: argparse.Namespace, base_dir: Path) -> None:
        self.args = args
        self.bench = foundation.Bench(foundation.parse_args(["--reference"]), FULL)
        gateway = self.bench.gateway
        port = procs.free_port()
        argv = [str(port) if a == str(self.bench.ports["gateway"]) else a for a in gateway.argv]
        argv = [str(WORK / "base-data") if a == str(foundation.WORK / "data") else a for a in argv]
        self.base = procs.ManagedProcess(
            "gateway-base", argv, WORK / "gateway-base.log", f"http://{HOST}:{port}/readyz",
            env={**gateway.env, "PYTHONPATH": str(base_dir / "src")})
        self.base_dir = base_dir
        self.ports = {"direct": self.bench.ports["direct"], "head": self.bench.ports["gateway"],
                      "base": port, "reference": self.bench.ports["reference"]}
        self.servers = {"direct": self.bench.upstream, "head": gateway, "base": self.base,
                        "reference": self.bench.reference}

    def start(self) -> None:
        subprocess.run(["rm", "-rf", str(WORK / "base-data"), str(foundation.WORK / "data")],
                       check=True)
        self.bench.start()
        self.base.start(self.base_dir)
        self.base.wait_ready(timeout_s=60)

    def stop(self) -> None:
        self.base.stop()
        self.bench.stop()

    def request(self, side: str) -> bytes:
        return client.build_request(HOST, self.ports[side], foundation.PATH, foundation.BODY,
                                    foundation.API_KEY)

    def warm(self) -> None:
        for side in self.ports:
            self.bench.run_async(client.fixed_count(HOST, self.ports[side], self.request(side),
                                                    5000, 64))

    def throughput(self) -> dict[str, list[dict[str, float]]]:
        sides = ["head", "base", "reference"]
        out: dict[str, list[dict[str, float]]] = {s: [] for s in sides}
        for b in range(self.args.blocks):
            for side in sides[b % 3:] + sides[:b % 3]:
                cpu0 = self.servers[side].cpu_seconds()
                result = wrk.run(f"http://{HOST}:{self.ports[side]}{foundation.PATH}",
                                 self.bench.wrk_script, connections=64,
                                 duration_s=self.args.seconds)
                cpu = self.servers[side].cpu_seconds() - cpu0
                out[side].append({"rps": result.rps, "p99_ms": result.p99_ms,
                                  "cpu_ms_per_request": 1000.0 * cpu / max(1, result.requests),
                                  "errors": result.non_2xx + result.socket_errors})
            foundation._log(f"block {b + 1}/{self.args.blocks}: " + ", ".join(
                f"{s} {out[s][-1]['rps']:,.0f} req/s {out[s][-1]['cpu_ms_per_request']:.4f} ms CPU"
                for s in sides))
        return out

    def latency(self) -> dict[str, list[float]]:
        sides = ["direct", "head", "base", "reference"]

        async def go() -> dict[str, list[float]]:
            conns = {s: await client.Connection.open(HOST, self.ports[s], self.request(s))
                     for s in sides}
            p50s: dict[str, list[float]] = {s: [] for s in sides}
            try:
                for b in range(self.args.blocks):
                    for side in sides[b % 4:] + sides[:b % 4]:
                        samples = client.Samples()
                        await client.sequential(conns[side], self.args.count, samples)
                        p50s[side].append(percentile(samples.latencies, 50))
            finally:
                for conn in conns.values():
                    await conn.close()
            return p50s

        return self.bench.run_async(go())


def summarise(tp: dict[str, list[dict[str, float]]], lat: dict[str, list[float]]) -> dict[str, Any]:
    def med(side: str, key: str) -> float:
        return median([block[key] for block in tp[side]])

    def paired(key: str, a: str, b: str) -> float:
        return median([x[key] / y[key] for x, y in zip(tp[a], tp[b], strict=True)])

    added = {s: median([v - d for v, d in zip(lat[s], lat["direct"], strict=True)])
             for s in ("head", "base", "reference")}
    return {
        "cpu_ms_per_request": {s: round(med(s, "cpu_ms_per_request"), 4) for s in tp},
        "rps": {s: round(med(s, "rps")) for s in tp},
        "added_p50_ms": {s: ms(v) for s, v in added.items()},
        "cpu_head_over_base": round(paired("cpu_ms_per_request", "head", "base"), 3),
        "rps_head_over_base": round(paired("rps", "head", "base"), 3),
        "cpu_over_reference": {s: round(paired("cpu_ms_per_request", s, "reference"), 3)
                               for s in ("head", "base")},
        "added_p50_head_over_base": round(added["head"] / added["base"], 3),
        "errors": {s: sum(int(block["errors"]) for block in tp[s]) for s in tp},
    }


def render(result: dict[str, Any]) -> str:
    s, head, base = result["summary"], result["head"], result["base"]
    rows = [
        ("Server CPU per request, 64 clients (ms)", "cpu_ms_per_request", "{:.4f}"),
        ("Throughput, 64 clients (req/s)", "rps", "{:,}"),
    ]
    lines = [f"# Gateway at {head} against the gateway at {base}, same run",
             "", "| metric | base | head | reference proxy | head ÷ base |", "|---|---:|---:|---:|---:|"]
    ratio = {"cpu_ms_per_request": s["cpu_head_over_base"], "rps": s["rps_head_over_base"]}
    for label, key, fmt in rows:
        lines.append(f"| {label} | {fmt.format(s[key]['base'])} | {fmt.format(s[key]['head'])} | "
                     f"{fmt.format(s[key]['reference'])} | {ratio[key]:.3f}× |")
    lines.append(f"| Added latency p50, 1 client (ms) | +{s['added_p50_ms']['base']:.3f} | "
                 f"+{s['added_p50_ms']['head']:.3f} | +{s['added_p50_ms']['reference']:.3f} | "
                 f"{s['added_p50_head_over_base']:.3f}× |")
    lines.append(f"| CPU per request ÷ reference proxy's (paired) | "
                 f"{s['cpu_over_reference']['base']:.3f}× | {s['cpu_over_reference']['head']:.3f}× | "
                 "1 | — |")
    lines += ["", f"{result['blocks']} blocks of wrk (64 clients, {result['seconds']:g} s) and of "
              f"{result['count']} sequential requests per side, the order rotating every block; "
              "medians over blocks; head ÷ base is the median of per-block ratios. Both gateways "
              "serve the foundation benchmark's platform file (admission on: limits, a budget, "
              "prices) against one mock upstream; CPU is each server's process tree. "
              f"Non-2xx or socket errors: {s['errors']}.",
              f"Machine: {result['machine']}; other processes busy {result['busy_pct_before']:.0f}% "
              f"of all cores before the run; {result['at']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base_sha, base_dir = extract(args.base)
    head_sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.strip()
    head = head_sha + ("+changes" if dirty else "")
    busy = procs.busy_pct(2.0)
    versus = Versus(args, base_dir)
    versus.start()
    try:
        versus.bench.sanity()
        versus.warm()
        lat = versus.latency()
        tp = versus.throughput()
    finally:
        versus.stop()
    stamp = datetime.now(UTC)
    m = machine_info()
    result = {"head": head, "base": base_sha, "blocks": args.blocks, "seconds": args.seconds,
              "count": args.count, "busy_pct_before": busy, "at": stamp.isoformat(timespec="seconds"),
              "machine": f"{m['nproc']} cores ({m['cpu_model']}), Python {m['python']}",
              "throughput": tp, "latency_p50_s": lat, "summary": summarise(tp, lat)}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    name = f"versus-{base_sha[:7]}-{stamp:%Y%m%d-%H%M}"
    for stem in (name, "versus-latest"):
        (args.results_dir / f"{stem}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        (args.results_dir / f"{stem}.md").write_text(render(result))
    sys.stdout.write(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
