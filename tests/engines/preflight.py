"""Whether this machine can run the engine tier; prints the reason to skip it, or nothing.

``make test`` runs it (with the system Python, before any virtualenv exists) to
decide whether to install the vLLM virtualenv, and hands what it printed to
pytest as ``INFERENCEOPS_ENGINES_SKIP``; ``tests/engines/conftest.py`` asks
the same question when pytest runs without ``make``. Standard library only.

The tier needs memory for two vLLM replicas (~3 GB each) and, until its
virtualenv is installed, disk for it (~2.5 GB, plus pip's downloads).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

MIN_AVAILABLE_MEMORY_GIB = 8.0
MIN_FREE_DISK_GB = 6.0
_GIB = 1024**3


def available_memory_gib() -> float | None:
    """MemAvailable from /proc/meminfo (None where there is no such file)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / _GIB
    except OSError:
        pass
    return None


def free_disk_gb(path: Path) -> float:
    """Free space on the file system that holds ``path`` (or its nearest existing parent)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 1e9


def installed(venv: Path) -> bool:
    return (venv / ".installed").is_file() and (venv / "bin" / "python").is_file()


def skip_reason(venv: Path, engines: str = "auto") -> str:
    """Why the engine tier cannot run here ('' when it can)."""
    if engines == "skip":
        return "ENGINES=skip"
    memory = available_memory_gib()
    if memory is None:
        return "no /proc/meminfo: the engine tier runs vLLM for the CPU on Linux only"
    if memory < MIN_AVAILABLE_MEMORY_GIB:
        return (f"only {memory:.1f} GiB of memory available; two vLLM replicas need "
                f"{MIN_AVAILABLE_MEMORY_GIB:g} GiB")
    if not installed(venv):
        disk = free_disk_gb(venv)
        if disk < MIN_FREE_DISK_GB:
            return (f"only {disk:.1f} GB of disk free for the vLLM virtualenv {venv}; installing "
                    f"it needs {MIN_FREE_DISK_GB:g} GB")
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path(".engines/vllm"))
    parser.add_argument("--engines", choices=("auto", "skip"), default="auto",
                        help="skip: leave the tier out on purpose")
    args = parser.parse_args(argv)
    print(skip_reason(args.venv, args.engines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
