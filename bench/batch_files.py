"""Batch input at its limits: how fast a 50,000-line file is validated, and whether the
gateway's memory stays flat while a 200 MB file goes in and out (issue #12).

One ``inferenceops serve`` worker (SQLite, its in-process batch executor) over one
simulated replica (``bench.sim_fleet``). Two files, written to disk first and
streamed from there:

* **typical**: 50,000 chat lines of ~100 tokens (~450 bytes a line, ~22 MB);
* **large**: 50,000 lines of ~4 KB (200 MB, the default ``INFERENCEOPS_FILES_MAX_BYTES``).

For each: ``POST /v1/files`` (multipart, streamed), ``POST /v1/batches`` — over 1,000
lines, so the batch is created ``validating`` and the executor checks every line
afterwards — polled every 50 ms until it leaves ``validating``: the lines/s of
that check (target ≥ 20,000 lines/s; it includes the executor's pickup, up to
``INFERENCEOPS_BATCH_POLL_S`` = 0.2 s here, and writing one row per line); the
batch is then cancelled. Then ``GET /v1/files/{id}/content`` is read to the end
(discarded). The gateway process tree's RSS is sampled every 20 ms throughout:
its idle value and its peak during each upload, check and download (target:
flat — growth far below the file's size).

Run: ``python -m bench.batch_files`` (~2 minutes; ``--quick``: 5,000 lines).
Writes ``bench/results/batch_files-<stamp>.json|.md`` and ``batch_files-latest.*``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import procs
from bench.sim_fleet import API_KEY, HOST, MODEL, SimFleet

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "batch_files"
RESULTS = ROOT / "bench" / "results"
HEADERS = {"Authorization": f"Bearer {API_KEY}"}
_VOCAB = [f"{a}{b}" for a in ("al", "be", "co", "de", "ex", "fo", "gu", "hi")
          for b in ("ram", "sel", "tor", "vin", "lex", "mod", "nar", "pix")]


def write_file(path: Path, lines: int, words: int) -> int:
    """``lines`` chat requests of ``words`` words each, to ``path``; its size in bytes."""
    rng = random.Random(f"{lines}-{words}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for i in range(lines):
            body = {"model": MODEL, "max_tokens": 16, "messages": [
                {"role": "user", "content": f"Document {i}: " + " ".join(rng.choices(_VOCAB,
                                                                                     k=words))}]}
            out.write(orjson.dumps({"custom_id": f"line-{i}", "method": "POST",
                                    "url": "/v1/chat/completions", "body": body}) + b"\n")
    return path.stat().st_size


class RssSampler:
    """The gateway tree's RSS every ``every_s``, each sample tagged with the current phase."""

    def __init__(self, gateway: procs.ManagedProcess, every_s: float = 0.02) -> None:
        self.gateway, self.every_s = gateway, every_s
        self.phase = "idle"
        self.peaks: dict[str, float] = {}
        self.starts: dict[str, float] = {}  # the RSS as each phase began
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            await self.sample()
            await asyncio.sleep(self.every_s)

    async def sample(self) -> float:
        """One sample for the current phase (also taken as a phase ends: a short phase may fall
        between two periodic samples)."""
        rss = await asyncio.to_thread(self.gateway.rss_mb)
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)
        return rss

    async def enter(self, phase: str) -> None:
        self.starts[phase] = await self.sample()
        self.phase = phase

    def stop(self) -> None:
        self._stop.set()


async def one_file(session: aiohttp.ClientSession, base: str, path: Path, lines: int,
                   rss: RssSampler, name: str) -> dict[str, Any]:
    await rss.enter(f"{name}: upload")
    began = time.perf_counter()
    with path.open("rb") as handle:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", handle, filename=path.name, content_type="application/jsonl")
        async with session.post(f"{base}/v1/files", data=form, headers=HEADERS) as resp:
            assert resp.status == 200, await resp.text()
            file_id = (await resp.json())["id"]
    upload_s = time.perf_counter() - began
    await rss.enter(f"{name}: check")
    async with session.post(f"{base}/v1/batches", headers=HEADERS, json={
            "input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": "24h"}) as resp:
        assert resp.status == 200, await resp.text()
        batch = await resp.json()
    created = time.perf_counter()
    assert batch["status"] == "validating", batch["status"]
    while batch["status"] == "validating":
        await asyncio.sleep(0.05)
        async with session.get(f"{base}/v1/batches/{batch['id']}", headers=HEADERS) as resp:
            batch = await resp.json()
    check_s = time.perf_counter() - created
    async with session.post(f"{base}/v1/batches/{batch['id']}/cancel", headers=HEADERS) as resp:
        await resp.read()
    await rss.enter(f"{name}: download")
    began = time.perf_counter()
    got = 0
    async with session.get(f"{base}/v1/files/{file_id}/content", headers=HEADERS) as resp:
        assert resp.status == 200
        async for chunk in resp.content.iter_chunked(1 << 16):
            got += len(chunk)
    download_s = time.perf_counter() - began
    await rss.enter("after")
    assert got == path.stat().st_size, (got, path.stat().st_size)
    return {"lines": lines, "bytes": got, "status_after_check": batch["status"],
            "upload_s": upload_s, "check_s": check_s, "check_lines_per_s": lines / check_s,
            "download_s": download_s}


async def warm_up(session: aiohttp.ClientSession, base: str) -> None:
    """One small file through upload, a batch (checked inside the create call) and download."""
    line = orjson.dumps({"custom_id": "warm", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": MODEL, "max_tokens": 1,
                                  "messages": [{"role": "user", "content": "hi"}]}})
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    form.add_field("file", line + b"\n", filename="warm.jsonl", content_type="application/jsonl")
    async with session.post(f"{base}/v1/files", data=form, headers=HEADERS) as resp:
        file_id = (await resp.json())["id"]
    async with session.post(f"{base}/v1/batches", headers=HEADERS, json={
            "input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": "24h"}) as resp:
        assert resp.status == 200, await resp.text()
    async with session.get(f"{base}/v1/files/{file_id}/content", headers=HEADERS) as resp:
        await resp.read()


async def drive(fleet: SimFleet, files: dict[str, tuple[Path, int]]) -> dict[str, Any]:
    rss = RssSampler(fleet.gateway)
    base = f"http://{HOST}:{fleet.gateway_port}"
    out: dict[str, Any] = {}
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await warm_up(session, base)  # the Files and Batch APIs are built on their first use
        sampler = asyncio.create_task(rss.run())
        await asyncio.sleep(1.0)  # the idle value
        for name, (path, lines) in files.items():
            out[name] = await one_file(session, base, path, lines, rss, name)
            await asyncio.sleep(1.0)
    rss.stop()
    await sampler
    idle = rss.peaks.get("idle", 0.0)
    for name in files:
        out[name]["rss_peak_mb"] = {phase.split(": ")[1]: round(peak, 1)
                                    for phase, peak in rss.peaks.items() if phase.startswith(name)}
        # What each phase added to the RSS it began with.
        out[name]["rss_growth_mb"] = {
            phase.split(": ")[1]: round(peak - rss.starts[phase], 1)
            for phase, peak in rss.peaks.items() if phase.startswith(name)}
    return {"idle_rss_mb": round(idle, 1), "files": out}


def markdown(r: dict[str, Any]) -> str:
    lines = [f"# Batch files at their limits — {r['stamp']}", "",
             f"One gateway worker (SQLite, in-process executor polling every 0.2 s) over one "
             f"simulated replica; files streamed from disk; each file uploaded, checked (a batch "
             f"created `validating`, then cancelled) and downloaded. Commit {r['commit']}. "
             f"Machine: 2 shared cores. Gateway RSS (process tree) {r['idle_rss_mb']:.1f} MB "
             "idle after a warm-up.", "",
             "| file | lines | size MB | upload s | check s | check lines/s | download s | "
             "RSS added by upload / check / download MB | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, f in r["files"].items():
        grew = " / ".join(f"{f['rss_growth_mb'].get(p, 0):+.1f}"
                          for p in ("upload", "check", "download"))
        lines.append(f"| {name} | {f['lines']:,} | {f['bytes'] / 1e6:,.1f} | {f['upload_s']:.2f} | "
                     f"{f['check_s']:.2f} | {f['check_lines_per_s']:,.0f} | "
                     f"{f['download_s']:.2f} | {grew} | {max(f['rss_peak_mb'].values()):.0f} |")
    lines += ["", "## Targets (reported, not asserted)", ""] + [f"- {t}" for t in r["targets"]]
    lines += ["", "The check keeps each line's place (offset, length, custom_id) until it writes "
              "the line rows: what it adds grows with the line count (at most "
              "`INFERENCEOPS_FILES_MAX_LINES`), not with the file's bytes.", ""]
    return "\n".join(lines)


def targets(r: dict[str, Any]) -> list[str]:
    out = []
    for name, f in r["files"].items():
        rate = f["check_lines_per_s"]
        out.append(f"{name}: {f['lines']:,} lines checked at {rate:,.0f} lines/s "
                   f"({'meets' if rate >= 20_000 else 'misses'} the 20,000 lines/s target)")
        moved = max(f["rss_growth_mb"].get("upload", 0.0), f["rss_growth_mb"].get("download", 0.0))
        size = f["bytes"] / 1e6
        out.append(f"{name}: uploading and downloading {size:,.0f} MB added at most "
                   f"{moved:.1f} MB to the gateway's RSS "
                   f"({'flat' if moved < max(16.0, 0.05 * size) else 'not flat'}: under 5 % of "
                   "the file, or 16 MB)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="5,000-line files")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    lines = 5_000 if args.quick else 50_000
    files = {"typical": (WORK / "files" / "typical.jsonl", lines, 60),
             "large": (WORK / "files" / "large.jsonl", lines, 640)}
    for path, count, words in files.values():
        size = write_file(path, count, words)
        print(f"[batch-files] {path.name}: {count:,} lines, {size / 1e6:,.1f} MB", flush=True)
    fleet = SimFleet(WORK / "fleet", 1, source="bench/batch_files.py", env={
        "INFERENCEOPS_BATCH_POLL_S": "0.2", "INFERENCEOPS_FILES_MAX_LINES": str(max(50_000, lines)),
        "INFERENCEOPS_LOG_LEVEL": "warning"})
    stamp = time.strftime("%Y%m%d-%H%M")
    commit = procs.subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                  capture_output=True, text=True).stdout.strip()
    try:
        fleet.start()
        result = asyncio.run(drive(fleet, {n: (p, c) for n, (p, c, _) in files.items()}))
    finally:
        fleet.stop()
    result.update(stamp=stamp, commit=commit, quick=args.quick)
    result["targets"] = targets(result)
    text = markdown(result)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        for stem in (f"batch_files-{stamp}", "batch_files-latest"):
            (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
            (RESULTS / f"{stem}.md").write_text(text)
            print(f"[batch-files] wrote bench/results/{stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
