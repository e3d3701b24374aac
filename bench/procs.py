"""Starting, watching and always stopping the benchmark's server processes.

Each server is started in its own session (so its process group id is its
pid) and stopped by signalling that group: granian's worker children go with
it even when the main process is wedged. CPU and memory are read from
``/proc`` for the whole process *tree* (granian main + workers), because the
work happens in the workers and ``cutime``/``cstime`` only count children that
have already exited and been reaped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK: int = os.sysconf("SC_CLK_TCK")


class StartupError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on right now (other sessions may hold fixed ones)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the ``(comm)`` field, which may contain spaces."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2:].split()


def descendants(root: int) -> list[int]:
    """``root`` and every live descendant, found through the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds; 0 if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the comm field: state=0, ppid=1, ..., utime=11, stime=12 (stat fields 14 and 15).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    """VmRSS of one process in MiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of one process (granian's Rust threads vs the Python loop)."""
    out: dict[str, float] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(f"/proc/{pid}/task"):
            try:
                name = Path(f"/proc/{pid}/task/{entry.name}/comm").read_text().strip()
                raw = Path(f"/proc/{pid}/task/{entry.name}/stat").read_text()
            except FileNotFoundError:
                continue
            fields = raw[raw.rfind(")") + 2:].split()
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def system_cpu_seconds() -> dict[str, float]:
    """All cores' CPU seconds since boot from /proc/stat, split by who can be blamed.

    ``tasks`` is time charged to processes (user + nice + system): ours, or
    other people's. ``irq`` (hard + soft interrupts; the loopback network stack
    runs largely in softirq, so it grows with the request rate) and ``steal``
    (the hypervisor ran another VM) are not charged to any process, so they are
    kept apart instead of being mistaken for other processes.
    """
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return {"tasks": (user + nice + system) / CLK_TCK, "irq": (irq + softirq) / CLK_TCK,
            "steal": steal / CLK_TCK}


def system_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot."""
    return sum(system_cpu_seconds().values())


@dataclass
class ManagedProcess:
    """One server process (and its children), with its log file and readiness URL."""

    name: str
    argv: list[str]
    log_path: Path
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was not started"
        return self.popen.pid

    def start(self, cwd: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # a restart keeps the first run's log
            self.popen = subprocess.Popen(self.argv, cwd=cwd, env={**os.environ, **self.env},
                                          stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float = 30.0) -> float:
        """Poll ``ready_url`` until it answers 200; seconds it took. Raises ``StartupError``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.popen is not None and self.popen.poll() is not None:
                raise StartupError(f"{self.name} exited with code {self.popen.returncode}\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=1.0) as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise StartupError(f"{self.name} not ready at {self.ready_url} within {timeout_s:g}s\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(f"  | {line}" for line in text[-lines:])

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tree(self) -> list[int]:
        return descendants(self.pid)

    def workers(self) -> list[int]:
        """The tree minus the main process: granian's worker processes."""
        return [p for p in self.tree() if p != self.pid]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p) for p in self.tree())

    def rss_mb(self) -> float:
        return sum(rss_mb(p) for p in self.tree())

    def rss_breakdown(self) -> dict[str, float]:
        return {("main" if p == self.pid else f"worker:{p}"): round(rss_mb(p), 2)
                for p in self.tree()}

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash, not a shutdown) and reap it."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``grace_s``."""
        if self.popen is None:
            return
        pgid = self.popen.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace_s)
        # Workers may outlive the main process; the group signal reaches them all.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace_s)


def busy_pct(window_s: float = 1.0) -> float:
    """Share of all cores (0-100) that were busy over the next ``window_s`` seconds."""
    ncpu = os.cpu_count() or 1
    before = system_busy_seconds()
    time.sleep(window_s)
    return 100.0 * (system_busy_seconds() - before) / (window_s * ncpu)


def wait_for_quiet(max_wait_s: float, threshold_pct: float, window_s: float = 2.0) -> float:
    """Wait (up to ``max_wait_s``) until the machine is mostly idle; the last busy share seen.

    On a shared machine other people's test runs steal the CPU the servers
    need; starting in a quiet moment is cheaper than averaging the noise away.
    """
    deadline = time.monotonic() + max_wait_s
    busy = busy_pct(window_s)
    while busy > threshold_pct and time.monotonic() < deadline:
        busy = busy_pct(window_s)
    return busy
