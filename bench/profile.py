"""Where the gateway worker spends its CPU: py-spy samples, summarised as text.

Optional (``--profile``): py-spy is a PyPI tool, not a project dependency.
It samples the worker without pausing it (``--nonblocking``), so the load run
it rides on is only slightly slower; that run's throughput is not reported.
py-spy sees Python frames only: time in granian's Rust threads shows up in
the per-thread CPU split that ``bench.run`` records from /proc instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_LINENO = re.compile(r":\d+\)$")
# Frames that only start the process (CLI, granian's process manager, runpy): every sample
# sits under them, so they would crowd the inclusive list and say nothing.
_BOOTSTRAP = ("typer/", "click/", "runpy", "multiprocessing/", "granian/server/",
              "inferenceops/cli/", "inferenceops/serving.py", "inferenceops/__main__.py")


def pyspy_path() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(pid: int, duration_s: int, out: Path, rate: int = 200) -> subprocess.Popen[bytes]:
    """Begin sampling ``pid`` for ``duration_s`` into a collapsed-stack file at ``out``."""
    exe = pyspy_path()
    if exe is None:
        raise RuntimeError("py-spy not found; pip install py-spy into the venv")
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--duration", str(duration_s), "--rate", str(rate),
         "--format", "raw", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _function(frame: str) -> str:
    """``f (app.py:12)`` → ``f (app.py)``: the lines of one function count together."""
    frame = _LINENO.sub(")", frame)
    return frame.replace(str(Path(sys.prefix)), "<venv>")


def summarise(collapsed: Path, top: int = 20) -> dict[str, object]:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        count = int(match.group(2))
        frames = [_function(f) for f in match.group(1).split(";") if f]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        if any(marker in leaf for marker in _BOOTSTRAP):
            leaf = "<event loop itself: uvloop / granian native code>"
        own[leaf] += count
        for name in set(frames):
            if not any(marker in name for marker in _BOOTSTRAP):
                inclusive[name] += count
    if total == 0:
        return {"samples": 0, "self": [], "inclusive": []}

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100.0 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"samples": total, "self": share(own), "inclusive": share(inclusive)}


def as_text(summary: dict[str, object]) -> str:
    lines = [f"py-spy samples (non-idle Python frames): {summary['samples']}", "",
             "top self time (% of samples):"]
    lines += [f"  {pct:5.1f}%  {name}" for name, pct in summary["self"]]  # type: ignore[attr-defined]
    lines += ["", "top inclusive time (% of samples; process start-up frames left out):"]
    lines += [f"  {pct:5.1f}%  {name}" for name, pct in summary["inclusive"]]  # type: ignore[attr-defined]
    return "\n".join(lines) + "\n"
