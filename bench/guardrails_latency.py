"""What one default guardrail policy adds to a request, measured beside the same gateway without it.

``python -m bench.guardrails_latency`` (part of ``make bench-guardrails``) starts the
foundation benchmark's mock upstream and two gateways over it, identical (the same
platform file: admission rules, prices) but for one policy attached to the whole
platform on the second — every built-in entity type, blocked or redacted on input and
output (``POLICY``). It then runs alternating blocks (ABBA order) of sequential requests,
one connection per side, plain and streamed, and reports per side the p50 added to the
upstream's own latency (direct side, measured in the same blocks) and the difference the
policy makes, as the median over blocks. Target (issue #13): within 0.1 ms.

Writes ``bench/results/guardrails_latency-<stamp>.{json,md}`` and ``-latest.*``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench import client, procs, upstream
from bench.plans import ADMISSION_RULES

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "guardrails-latency"
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
API_KEY = "sk-bench"
PATH = "/v1/chat/completions"
TARGET_MS = 0.1
_CHAT = {"model": upstream.MODEL, "max_tokens": 16,
         "messages": [{"role": "user", "content": "Say hello to the benchmark."}]}
BODIES = {"plain": orjson.dumps(_CHAT), "stream": orjson.dumps({**_CHAT, "stream": True})}
#: One default policy: every built-in entity, checked on the way in and out.
POLICY = {"policies": [{"name": "default", "rules": [
    {"entities": ["card", "iban", "secret", "national_id"], "action": "block"},
    {"entities": ["email", "phone", "ip_address"], "action": "redact"}]}],
    "attach": [{"policy": "default"}]}
SIDES = ("direct", "gateway", "guarded")


def _platform(port: int, guarded: bool) -> str:
    text = ("deployments:\n  - name: bench-upstream\n    engine: openai\n"
            f"    served_model: {upstream.MODEL}\n    replicas:\n"
            f"      - url: http://{HOST}:{port}/v1\n    capacity: 10000\n"
            f"models:\n  - name: {upstream.MODEL}\n    deployment: bench-upstream\n"
            + ADMISSION_RULES)
    if guarded:
        text += yaml.safe_dump({"guardrails": POLICY}, sort_keys=False)
    return text


def _gateway(name: str, port: int, upstream_port: int, guarded: bool) -> procs.ManagedProcess:
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    config = work / "platform.yaml"
    config.write_text(_platform(upstream_port, guarded))
    return procs.ManagedProcess(
        name, [sys.executable, "-m", "inferenceops", "serve", "--host", HOST, "--port", str(port),
               "--config", str(config), "--data-dir", str(work / "data"), "--workers", "1",
               "--shutdown-timeout", "2"],
        work / "gateway.log", f"http://{HOST}:{port}/readyz", env={"INFERENCEOPS_ADMIN_KEY": API_KEY})


async def _blocks(ports: dict[str, int], kind: str, blocks: int, count: int
                  ) -> list[dict[str, float]]:
    """Per block, each side's p50 (ms) of the full response (plain) or of the first chunk."""
    requests = {s: client.build_request(HOST, p, PATH, BODIES[kind], API_KEY)
                for s, p in ports.items()}
    conns = {s: await client.Connection.open(HOST, ports[s], requests[s]) for s in SIDES}
    out = []
    try:
        for b in range(blocks):
            row: dict[str, float] = {}
            for side in (SIDES if b % 2 == 0 else SIDES[::-1]):
                samples = client.Samples()
                gc.collect()
                gc.disable()
                try:
                    await client.sequential(conns[side], count, samples)
                finally:
                    gc.enable()
                values = samples.first_chunks if kind == "stream" else samples.latencies
                row[side] = statistics.median(values) * 1000.0
            out.append(row)
    finally:
        for conn in conns.values():
            await conn.close()
    return out


def _summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    return {"blocks": rows,
            "gateway_added_p50_ms": med([r["gateway"] - r["direct"] for r in rows]),
            "guarded_added_p50_ms": med([r["guarded"] - r["direct"] for r in rows]),
            "policy_adds_p50_ms": med([r["guarded"] - r["gateway"] for r in rows])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.guardrails_latency",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    blocks, count = (2, 200) if args.quick else (8, 1000)
    ports = {side: procs.free_port() for side in SIDES}
    servers = [
        procs.ManagedProcess("upstream", [sys.executable, "-m", "bench.upstream", "--port",
                                          str(ports["direct"])],
                             WORK / "upstream.log", f"http://{HOST}:{ports['direct']}/health"),
        _gateway("gateway", ports["gateway"], ports["direct"], guarded=False),
        _gateway("guarded", ports["guarded"], ports["direct"], guarded=True)]
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    try:
        for server in servers:
            server.start(ROOT)
        for server in servers:
            server.wait_ready()
        runner = asyncio.Runner()
        try:
            for kind in ("plain", "stream"):  # warm both, then measure
                runner.run(_blocks(ports, kind, 1, count))
            for kind in ("plain", "stream"):
                results[kind] = _summary(runner.run(_blocks(ports, kind, blocks, count)))
        finally:
            runner.close()
    finally:
        for server in reversed(servers):
            server.stop()
    stamp = datetime.now(UTC)
    results["meta"] = {"at": stamp.isoformat(timespec="seconds"), "blocks": blocks,
                       "requests_per_block_and_side": count, "policy": POLICY,
                       "target_ms": TARGET_MS, "quick": args.quick}
    _write(results, args.results_dir, stamp)
    return 0


def _write(results: dict[str, Any], results_dir: Path, stamp: datetime) -> None:
    lines = ["# One default guardrail policy: what it adds to a request", "",
             "| request | gateway added p50 | with the policy | the policy adds | target | met? |",
             "|---|---:|---:|---:|---|---|"]
    for kind, label in (("plain", "chat, whole answer"), ("stream", "chat stream, first chunk")):
        r = results[kind]
        target, met = ((f"≤ {TARGET_MS} ms", "✅ yes" if r["policy_adds_p50_ms"] <= TARGET_MS
                        else "❌ no") if kind == "plain" else ("—", "—"))
        lines.append(f"| {label} | +{r['gateway_added_p50_ms']:.3f} ms | "
                     f"+{r['guarded_added_p50_ms']:.3f} ms | {r['policy_adds_p50_ms']:+.3f} ms | "
                     f"{target} | {met} |")
    meta = results["meta"]
    lines += ["", f"Two gateways over the foundation benchmark's mock upstream, identical (admission "
              "rules and prices as in `bench.run`) but for one policy attached to the whole "
              "platform on the second: every built-in entity type, blocked (card, IBAN, secret, "
              "national id) or redacted (email, phone, IP address), on input and output. "
              f"{meta['blocks']} alternating blocks (ABBA) of {meta['requests_per_block_and_side']} "
              "sequential requests a side on one connection each; per block each side's p50 "
              "minus the upstream's own (direct) p50, then the median over blocks. The target "
              "is the foundation benchmark's (a whole answer). The mock upstream writes a "
              "stream's 20 events at once, and each is parsed, scanned and rewritten before the "
              "first byte goes out, so the stream row is the policy's cost on 20 events, not a "
              "wait (an engine sends one event per token, milliseconds apart). "
              f"Measured {meta['at']}{' (--quick)' if meta['quick'] else ''}."]
    results_dir.mkdir(parents=True, exist_ok=True)
    name = "guardrails_latency"
    for stem in (f"{name}-latest", f"{name}-{stamp:%Y%m%d-%H%M}"):
        (results_dir / f"{stem}.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
        (results_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
