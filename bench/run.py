"""One command, bounded in time: how much does the gateway add over its upstream?

``python -m bench.run`` starts a fast mock upstream (``bench.upstream``) and the
real gateway (``inferenceops serve``) pointed at it, then measures the same
request sent DIRECT to the upstream and THROUGH the gateway, in alternating
blocks so that drifts in machine load hit both sides alike:

1. added latency at 1 client (sequential keep-alive requests, lean client);
2. added streaming time-to-first-chunk at 1 client;
3. added whole-stream time, 20 chunks 2 ms apart, at 1 client (``bench.stream``);
4. throughput, p99 and CPU per request at 64 clients (wrk);
5. gateway memory after ~10k and ~200k requests;
6. idle RSS of one ``inferenceops serve`` worker on the embedded default
   (``bench.idle_memory``, its own server on a fresh data dir).

Results go to ``bench/results/foundation-latest.{json,md}`` plus a dated copy,
and the table is printed. Every process started here is stopped on the way out
(Ctrl-C included) unless ``--keep`` is given. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import orjson

from bench import client, idle_memory, procs, report, stream, summary, upstream, wrk
from bench import profile as pyspy
from bench.plans import ADMISSION_RULES, FULL, PACED_PRICE, QUICK, Plan

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
RESULTS = ROOT / "bench" / "results"
API_KEY = "sk-bench"
HOST = "127.0.0.1"
PATH = "/v1/chat/completions"
SIDES = ("direct", "gateway")  # plus "reference" with --reference

_CHAT = {"model": upstream.MODEL, "max_tokens": 16,
         "messages": [{"role": "user", "content": "Say hello to the benchmark."}]}
BODY: bytes = orjson.dumps(_CHAT)
STREAM_BODY: bytes = orjson.dumps({**_CHAT, "stream": True})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 60 s)")
    parser.add_argument("--gateway-workers", type=int, default=1, metavar="N",
                        help="granian workers for the gateway (default 1)")
    parser.add_argument("--upstream-interface", choices=("rsgi", "asgi"), default="rsgi",
                        help="mock upstream interface (rsgi measured faster here)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the upstream and gateway running at the end, for debugging")
    parser.add_argument("--reference", action="store_true",
                        help="also measure a minimal forwarder (bench.reference): the floor of the "
                        "gateway's stack")
    parser.add_argument("--reference-client", choices=("http1", "aiohttp"), default="http1",
                        help="the reference forwarder's upstream client (default: the gateway's own)")
    parser.add_argument("--profile", action="store_true",
                        help="also py-spy the gateway worker during one extra 64-client run")
    parser.add_argument("--quiet-wait", type=float, default=None, metavar="S",
                        help="wait up to S seconds for other processes to go idle before "
                        "starting (default 180, --quick 10)")
    parser.add_argument("--noise-threshold", type=float, default=25.0, metavar="PCT",
                        help="a wrk block during which other processes used more than PCT%% "
                        "of all cores is run again (at most twice; 2 retries per block on average)")
    parser.add_argument("--admission", choices=("memory", "redis", "off"), default="memory",
                        help="admission control in the gateway: limits, a budget, a deployment "
                        "capacity and priced usage on every request, with the in-memory ledger "
                        "(default) or Redis (--redis-url); off = no rules at all")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                        help="the Redis for --admission redis")
    parser.add_argument("--baseline-src", type=Path, default=None, metavar="DIR",
                        help="also run a second gateway from another checkout's src/ (e.g. a "
                        "worktree of main) as side gateway_base, in the same alternating "
                        "blocks: a change judged against its base on a noisy machine "
                        "(stream phase)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS,
                        help="where the JSON and markdown go (default bench/results)")
    return parser.parse_args(argv)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so the finally blocks stop every process we started


class Bench:
    """Owns the two servers, the client event loop and the running counts."""

    host = HOST

    def __init__(self, args: argparse.Namespace, plan: Plan) -> None:
        self.args = args
        self.plan = plan
        self.sides: tuple[str, ...] = SIDES + (("reference",) if args.reference else ())
        # The stream phase also measures the reference over the other client ("reference_alt").
        self.reference_sides: tuple[str, ...] = (("reference", "reference_alt")
                                                 if args.reference else ())
        alt_client = "aiohttp" if args.reference_client == "http1" else "http1"
        self.reference_clients = {"reference": args.reference_client, "reference_alt": alt_client}
        #: A gateway from another source tree (``--baseline-src``), for the stream phase.
        self.baseline_sides: tuple[str, ...] = (("gateway_base",)
                                                if getattr(args, "baseline_src", None) else ())
        self.ports = {side: procs.free_port() for side in (*self.sides, *self.baseline_sides,
                                                           *self.reference_sides)}
        self.gateway_requests = 0  # every request the gateway has answered, for the memory marks
        self.rss_trace: list[dict[str, float]] = []
        self.warnings: list[str] = []
        self.runner = asyncio.Runner(loop_factory=_loop_factory())
        self.wrk_script = wrk.write_script(WORK / "post.lua", BODY, API_KEY)
        self.upstream = procs.ManagedProcess(
            "upstream",
            [sys.executable, "-m", "bench.upstream", "--port", str(self.ports["direct"]),
             "--interface", args.upstream_interface],
            WORK / "upstream.log", f"http://{HOST}:{self.ports['direct']}/health")
        self.gateway = self._gateway("gateway", "data", {})
        self.reference = self._reference("reference")
        self.reference_alt = self._reference("reference_alt")
        # Which process tree serves each side: its CPU is that side's "server CPU".
        self.servers = {"direct": self.upstream, "gateway": self.gateway,
                        "reference": self.reference, "reference_alt": self.reference_alt}
        if self.baseline_sides:
            src = args.baseline_src.resolve()
            if not (src / "inferenceops" / "__init__.py").exists():
                raise SystemExit(f"--baseline-src {src}: no inferenceops package there "
                                 "(give a checkout's src/ folder)")
            self.servers["gateway_base"] = self._gateway("gateway_base", "data-base",
                                                         {"PYTHONPATH": str(src)})

    def _gateway(self, side: str, data: str, env: dict[str, str]) -> procs.ManagedProcess:
        args = self.args
        return procs.ManagedProcess(
            side.replace("_", "-"),
            [sys.executable, "-m", "inferenceops", "serve", "--host", HOST,
             "--port", str(self.ports[side]), "--config", str(self._platform_yaml()),
             "--data-dir", str(WORK / data), "--workers", str(args.gateway_workers),
             "--shutdown-timeout", "2"],
            WORK / f"{side}.log", f"http://{HOST}:{self.ports[side]}/readyz",
            env={"INFERENCEOPS_ADMIN_KEY": API_KEY, **env,
                 **({"INFERENCEOPS_REDIS_URL": args.redis_url} if args.admission == "redis" else {})})

    def _reference(self, side: str) -> procs.ManagedProcess:
        port = self.ports.get(side, 0)
        return procs.ManagedProcess(
            side.replace("_", "-"),
            [sys.executable, "-m", "bench.reference", "--port", str(port),
             "--upstream", f"http://{HOST}:{self.ports['direct']}",
             "--workers", str(self.args.gateway_workers),
             "--client", self.reference_clients[side]],
            WORK / f"{side}.log", f"http://{HOST}:{port}/health")

    def _platform_yaml(self) -> Path:
        WORK.mkdir(parents=True, exist_ok=True)
        path = WORK / "platform.yaml"
        path.write_text(
            "# generated by bench/run.py for this run\n"
            "deployments:\n"
            "  - name: bench-upstream\n"
            "    engine: openai\n"
            f"    served_model: {upstream.MODEL}\n"
            "    replicas:\n"
            f"      - url: http://{HOST}:{self.ports['direct']}/v1\n"
            + ("    capacity: 10000\n" if self.args.admission != "off" else "")
            + "  - name: bench-paced\n"
            "    engine: openai\n"
            f"    served_model: {upstream.PACED_MODEL}\n"
            "    replicas:\n"
            f"      - url: http://{HOST}:{self.ports['direct']}/v1\n"
            + ("    capacity: 10000\n" if self.args.admission != "off" else "")
            + "models:\n"
            f"  - name: {upstream.PACED_MODEL}\n"
            "    deployment: bench-paced\n"
            + (PACED_PRICE if self.args.admission != "off" else "")
            + f"  - name: {upstream.MODEL}\n"
            "    deployment: bench-upstream\n"
            + (ADMISSION_RULES if self.args.admission != "off" else ""))
        return path

    @staticmethod
    def log(message: str) -> None:
        _log(message)

    def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def request(self, side: str, body: bytes = BODY) -> bytes:
        return client.build_request(HOST, self.ports[side], PATH, body, API_KEY)

    def url(self, side: str) -> str:
        return f"http://{HOST}:{self.ports[side]}{PATH}"

    # ---------------------------------------------------------------- processes

    def _procs(self) -> list[procs.ManagedProcess]:
        return [self.servers[side] for side in self._all_sides()]

    def _all_sides(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.sides, *self.baseline_sides, *self.reference_sides)))

    def start(self) -> None:
        for proc in self._procs():
            proc.start(ROOT)
        for side, proc in zip(self._all_sides(), self._procs(), strict=True):
            took = proc.wait_ready()
            _log(f"{proc.name} ready on :{self.ports[side]} in {took:.1f}s "
                 f"(pid {proc.pid}, workers {proc.workers()})")

    def stop(self) -> None:
        self.runner.close()
        if self.args.keep:
            for proc in self._procs():
                if proc.alive():
                    _log(f"--keep: {proc.name} left running: {proc.ready_url} "
                         f"(stop with: kill -- -{proc.pid})")
            return
        for proc in reversed(self._procs()):
            proc.stop()

    def check_alive(self) -> None:
        for proc in self._procs():
            if not proc.alive():
                raise procs.StartupError(f"{proc.name} died during the run\n{proc.log_tail()}")

    def mark_rss(self, label: str) -> dict[str, float]:
        entry = {"label": label, "requests": self.gateway_requests,
                 "rss_mb": round(self.gateway.rss_mb(), 2)}
        self.rss_trace.append(entry)  # type: ignore[arg-type]
        return entry

    # ---------------------------------------------------------------- phases

    def sanity(self) -> None:
        """The gateway must return the upstream's exact bytes, or nothing else is worth timing."""
        async def one(side: str, body: bytes) -> client.Exchange:
            conn = await client.Connection.open(HOST, self.ports[side], self.request(side, body))
            try:
                return await conn.exchange(keep_body=True)
            finally:
                await conn.close()

        for side in self.sides:
            plain = self.run_async(one(side, BODY))
            streamed = self.run_async(one(side, STREAM_BODY))
            if plain.body != upstream.COMPLETION:
                raise client.ProtocolError(f"{side}: unexpected body {plain.body[:200]!r}")
            if streamed.body != b"".join(upstream.STREAM_CHUNKS):
                raise client.ProtocolError(f"{side}: unexpected SSE body {streamed.body[:200]!r}")
            if (side == "gateway") != (plain.overhead_ms is not None):
                raise client.ProtocolError(f"{side}: x-inferenceops-overhead-ms presence is wrong")
        self.gateway_requests += 2

    def warmup(self) -> None:
        """Warm both sides (imports, pools at 64 connections, streaming path) to the early mark."""
        p = self.plan
        stream_req = {s: self.request(s, STREAM_BODY) for s in self.sides}

        async def streams() -> None:
            for side in self.sides:
                conn = await client.Connection.open(HOST, self.ports[side], stream_req[side])
                await client.sequential(conn, 200, client.Samples())
                await conn.close()

        self.run_async(streams())
        self.gateway_requests += 200
        for side in self.sides:
            if side != "gateway":
                self.run_async(client.fixed_count(HOST, self.ports[side], self.request(side),
                                                  3000, p.wrk_connections))
        self.run_async(client.fixed_count(HOST, self.ports["gateway"], self.request("gateway"),
                                          p.memory_early - self.gateway_requests,
                                          p.wrk_connections))
        self.gateway_requests = p.memory_early
        time.sleep(0.5)
        self.mark_rss("early")

    def sequential_blocks(self, stream: bool, blocks: int, count: int) -> dict[str, Any]:
        """Alternating blocks (ABBA order) of sequential requests, one connection a side."""
        sides = self.sides
        body = STREAM_BODY if stream else BODY

        async def go() -> list[dict[str, client.Samples]]:
            conns = {s: await client.Connection.open(HOST, self.ports[s], self.request(s, body))
                     for s in sides}
            out = []
            try:
                for b in range(blocks):
                    block: dict[str, client.Samples] = {}
                    for side in (sides if b % 2 == 0 else sides[::-1]):
                        samples = client.Samples()
                        gc.collect()
                        gc.disable()  # a collector pause must not land in one side's numbers
                        try:
                            await client.sequential(conns[side], count, samples)
                        finally:
                            gc.enable()
                        block[side] = samples
                    out.append(block)
            finally:
                for conn in conns.values():
                    await conn.close()
            return out

        cpu0 = self.cpu_snapshot(self_cpu=True)
        started = time.perf_counter()
        per_block = self.run_async(go())
        cpu = self.cpu_delta(cpu0, time.perf_counter() - started, self_cpu=True)
        self.gateway_requests += blocks * count
        other = 100.0 * cpu["other_cpu_s"] / (cpu["wall_s"] * (os.cpu_count() or 1))
        if other > self.args.noise_threshold:
            self.warnings.append(f"1-client {'first-chunk' if stream else 'latency'} phase: other "
                                 f"processes used {other:.0f}% of all cores (alternating blocks "
                                 "spread it over both sides, but p99 especially is noisier)")
        return summary.summarise_sequential(per_block, sides, stream, cpu)

    def throughput(self) -> dict[str, Any]:
        """wrk at 64 clients, alternating direct/gateway blocks, with CPU read around each block."""
        p = self.plan
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in self.sides}
        discarded: list[dict[str, Any]] = []
        retries = 2 * p.wrk_blocks
        ncpu = os.cpu_count() or 1
        for b in range(p.wrk_blocks):
            for side in (self.sides if b % 2 == 0 else self.sides[::-1]):
                for attempt in range(3):
                    block = self._wrk_block(side, p.wrk_seconds)
                    other = 100.0 * block["other_cpu_s"] / (block["wall_s"] * ncpu)
                    _log(f"  wrk {side:7s} block {b + 1}/{p.wrk_blocks}: {block['rps']:,.0f} "
                         f"req/s, p99 {block['p99_ms']:.2f} ms, other processes {other:.0f}%")
                    if other <= self.args.noise_threshold or attempt == 2 or retries == 0:
                        break
                    retries -= 1  # bounded, so a busy machine cannot stretch the run much
                    discarded.append({"side": side, "block": b, **block})
                    _log("    disturbed by other processes; running this block again")
                if other > self.args.noise_threshold:
                    self.warnings.append(f"wrk {side} block {b + 1}: other processes used "
                                         f"{other:.0f}% of all cores (retries exhausted)")
                runs[side].append(block)
        self.mark_rss("after throughput")
        out: dict[str, Any] = {side: summary.summarise_wrk(side, blocks) for side, blocks in runs.items()}
        out["discarded_blocks"] = discarded
        return out

    def _wrk_block(self, side: str, seconds: float) -> dict[str, Any]:
        self.check_alive()
        threads0 = self._worker_threads()
        cpu0 = self.cpu_snapshot()
        result = wrk.run(self.url(side), self.wrk_script, connections=self.plan.wrk_connections,
                         duration_s=seconds)
        cpu = self.cpu_delta(cpu0, result.duration_s, extra_cpu_s=result.wrk_cpu_s)
        cpu["server_cpu_s"] = cpu[f"{self.servers[side].name}_cpu_s"]
        threads1 = self._worker_threads()
        if result.non_2xx or result.socket_errors:
            self.warnings.append(f"wrk {side}: {result.non_2xx} non-2xx, "
                                 f"{result.socket_errors} socket errors")
        if side == "gateway":
            self.gateway_requests += result.requests
        block: dict[str, Any] = {**result.to_dict(), **cpu}
        if side == "gateway":
            block["gateway_threads_cpu_s"] = {k: round(v - threads0.get(k, 0.0), 3)
                                              for k, v in threads1.items()}
        return block

    def soak(self) -> dict[str, Any]:
        """Top the gateway up to the late memory mark with wrk, then read RSS again."""
        p = self.plan
        started = time.monotonic()
        rps = 3000.0
        while self.gateway_requests < p.memory_late:
            left_s = p.max_soak_s - (time.monotonic() - started)
            if left_s < 1:
                self.warnings.append(f"memory soak stopped at {self.gateway_requests:,} requests "
                                     f"(time cap {p.max_soak_s:g}s)")
                break
            need_s = (p.memory_late - self.gateway_requests) / rps * 1.05 + 1
            block = self._wrk_block("gateway", min(need_s, left_s))
            rps = max(block["rps"], 500.0)
            _log(f"  soak: {self.gateway_requests:,} gateway requests so far")
        time.sleep(0.5)
        late = self.mark_rss("late")
        early = next(e for e in self.rss_trace if e["label"] == "early")
        return {"early": early, "late": late,
                "growth_mb": round(late["rss_mb"] - early["rss_mb"], 2),
                "trace": self.rss_trace, "breakdown_late": self.gateway.rss_breakdown()}

    def profile(self) -> dict[str, Any] | None:
        """py-spy on the (first) gateway worker during one extra 64-client gateway run."""
        if pyspy.pyspy_path() is None:
            self.warnings.append("--profile: py-spy not found (pip install py-spy)")
            return None
        worker = self.gateway.workers()[0] if self.gateway.workers() else self.gateway.pid
        seconds = max(3, int(self.plan.wrk_seconds))
        out = WORK / "gateway-profile.collapsed"
        spy = pyspy.start(worker, seconds, out)
        time.sleep(0.5)
        block = self._wrk_block("gateway", seconds)
        _, err = spy.communicate(timeout=seconds + 30)
        if spy.returncode != 0 or not out.exists():
            self.warnings.append(f"py-spy failed: {err.decode(errors='replace')[-300:]}")
            return None
        summary = pyspy.summarise(out)
        text = pyspy.as_text(summary)
        self.args.results_dir.mkdir(parents=True, exist_ok=True)
        (self.args.results_dir / "foundation-profile-latest.txt").write_text(
            f"gateway worker pid {worker}, {block['rps']:,.0f} req/s while sampled "
            f"(py-spy running; not a reported number)\n\n{text}")
        return {"worker_pid": worker, "rps_while_sampled": block["rps"], **summary}

    # ---------------------------------------------------------------- CPU accounting

    def _worker_threads(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid in self.gateway.workers():
            for name, secs in procs.thread_cpu(pid).items():
                totals[name] = totals.get(name, 0.0) + secs
        return totals

    def cpu_snapshot(self, self_cpu: bool = False) -> dict[str, float]:
        snap = {proc.name: proc.cpu_seconds() for proc in self._procs()}
        snap.update({f"system_{k}": v for k, v in procs.system_cpu_seconds().items()})
        if self_cpu:
            t = os.times()
            snap["client"] = t.user + t.system
        return snap

    def cpu_delta(self, before: dict[str, float], wall_s: float, self_cpu: bool = False,
                   extra_cpu_s: float = 0.0) -> dict[str, float]:
        """CPU seconds each party used since ``before``; the load generator is ``client``."""
        after = self.cpu_snapshot(self_cpu=self_cpu)
        ours = {f"{p.name}_cpu_s": after[p.name] - before[p.name] for p in self._procs()}
        loadgen = (after["client"] - before["client"]) if self_cpu else extra_cpu_s
        tasks = after["system_tasks"] - before["system_tasks"]
        other = tasks - sum(ours.values()) - loadgen
        return {"wall_s": round(wall_s, 3), **{k: round(v, 3) for k, v in ours.items()},
                "loadgen_cpu_s": round(loadgen, 3), "other_cpu_s": round(max(0.0, other), 3),
                "kernel_irq_cpu_s": round(after["system_irq"] - before["system_irq"], 3),
                "steal_cpu_s": round(after["system_steal"] - before["system_steal"], 3)}


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def measure(bench: Bench, plan: Plan) -> dict[str, Any]:
    started = time.monotonic()
    info = summary.machine_info()
    wait_s = bench.args.quiet_wait
    if wait_s is None:
        wait_s = 10.0 if bench.args.quick else 180.0
    _log(f"waiting up to {wait_s:g}s for the machine to be quiet "
         f"(other processes ≤ {bench.args.noise_threshold:g}% of all cores)")
    busy = procs.wait_for_quiet(wait_s, bench.args.noise_threshold)
    info["busy_pct_before_start"] = round(busy, 1)
    info["quiet_wait_s"] = round(time.monotonic() - started, 1)
    if busy > bench.args.noise_threshold:
        bench.warnings.append(f"other processes used {busy:.0f}% of all cores when the run "
                              f"started (after waiting {info['quiet_wait_s']:.0f}s): "
                              "numbers are noisier")
    _log("idle memory: the embedded default (inferenceops serve, fresh data dir), one worker")
    idle = idle_memory.measure(WORK)
    _log(f"idle RSS per worker {idle['worker_rss_mb']} MB (USS {idle['worker_uss_mb']} MB); "
         f"main {idle['gateway']['main']['rss_mb']} MB; bare forwarder's worker "
         f"{idle['reference_worker_rss_mb']} MB")
    bench.start()
    bench.sanity()
    stream.sanity(bench)
    _log("sanity: gateway returns the upstream's exact bytes (plain, SSE, paced SSE with the "
         "usage chunk it asked for hidden)")
    bench.warmup()
    _log(f"warm-up done; gateway RSS {bench.rss_trace[-1]['rss_mb']:.1f} MB after "
         f"{bench.gateway_requests:,} requests")
    latency = bench.sequential_blocks(False, plan.latency_blocks, plan.latency_requests)
    _log(f"latency 1 client: direct p50 {latency['direct_p50_ms']:.3f} ms, gateway p50 "
         f"{latency['gateway_p50_ms']:.3f} ms, added p50 {latency['added_p50_ms']:.3f} ms")
    ttfc = bench.sequential_blocks(True, plan.ttfc_blocks, plan.ttfc_requests)
    _log(f"first chunk 1 client: direct p50 {ttfc['direct_p50_ms']:.3f} ms, gateway p50 "
         f"{ttfc['gateway_p50_ms']:.3f} ms, added p50 {ttfc['added_p50_ms']:.3f} ms")
    _log(f"whole streams, {plan.stream_blocks} blocks × {plan.stream_requests} per side: "
         f"{', '.join(stream.stream_sides(bench))}")
    streams = stream.measure(bench, plan.stream_blocks, plan.stream_requests, plan.stream_warmup)
    _log(f"{stream.LABEL}: gateway +{streams['gateway_added_ms']:.3f} ms"
         + "".join(f", {n} +{streams[f'{n}_added_ms']:.3f} ms" for n in streams["sides"][2:]))
    bench.mark_rss("after 1-client phases")
    _log(f"wrk: {plan.wrk_blocks} block(s) × {plan.wrk_seconds:g}s per side, "
         f"{plan.wrk_connections} connections")
    throughput = bench.throughput()
    _log(f"soak to {plan.memory_late:,} gateway requests for the memory reading")
    memory = bench.soak()
    bench.check_alive()
    results: dict[str, Any] = {
        "benchmark": "foundation",
        "machine": info,
        "plan": asdict(plan),
        "quick": bench.args.quick,
        "gateway_workers": bench.args.gateway_workers,
        "upstream_interface": bench.args.upstream_interface,
        "reference": bench.args.reference,
        "reference_client": bench.args.reference_client,
        "admission": bench.args.admission,
        "request_bytes": {"plain": len(BODY), "stream": len(STREAM_BODY),
                          "completion": len(upstream.COMPLETION),
                          "sse_chunks": len(upstream.STREAM_CHUNKS)},
        "latency": latency,
        "ttfc": ttfc,
        "stream": streams,
        "throughput": throughput,
        "memory": memory,
        "idle_memory": idle,
    }
    if bench.args.profile:
        _log("profiling the gateway worker with py-spy during one extra wrk run")
        results["profile"] = bench.profile()
    results["warnings"] = bench.warnings
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["targets"] = report.verdicts(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    WORK.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, plan)
    try:
        results = measure(bench, plan)
    except procs.StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except wrk.WrkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except client.ProtocolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; stopping the servers", file=sys.stderr)
        return 130
    finally:
        bench.stop()
    stem = {"memory": "foundation", "off": "foundation-admission-off",
            "redis": "foundation-admission-redis"}[args.admission]
    if args.quick:
        stem += "-quick"
    paths = report.write(results, args.results_dir, stem=stem)
    _log(f"done in {results['duration_s']:.0f}s; wrote {', '.join(str(p) for p in paths[:2])}")
    print()
    print(report.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
