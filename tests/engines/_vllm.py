"""Process harness for the engine tier: the vLLM virtualenv, the tiny model, vLLM servers.

Owns finding, building, starting and stopping things; no assertions about the
gateway live here (``tests/integration/_harness.py`` starts the gateway).

- ``ROOT/.engines/vllm`` is the virtualenv ``make engines`` installs
  (``requirements/engines-vllm.txt``); ``ROOT/.engines/models`` caches what
  ``build_models.py`` makes (reused while its inputs are unchanged).
- ``VllmServer`` is one ``python -m vllm.entrypoints.openai.api_server`` in its
  own process group (it forks an engine core and a worker), offline, its
  output captured to a file, on a free loopback port. ``stop`` sends SIGTERM,
  waits, then SIGKILLs the group; an ``atexit`` hook does the same for
  anything a crashed run left behind. ``kill`` SIGKILLs the group at once (a
  crash); ``restart`` starts the same command on the same port again.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from tests.engines import preflight
from tests.integration._harness import free_port
from tests.support.process_groups import LIVE, kill_group

ROOT = Path(__file__).resolve().parents[2]
ENGINES_DIR = ROOT / ".engines"
VLLM_VENV = ENGINES_DIR / "vllm"
VLLM_PYTHON = VLLM_VENV / "bin" / "python"
MODELS_DIR = ENGINES_DIR / "models"
BUILD_SCRIPT = Path(__file__).with_name("build_models.py")

#: The skip reason ``make test`` worked out (tests/engines/preflight.py); unset outside make.
SKIP_ENV = "INFERENCEOPS_ENGINES_SKIP"
#: Ready in 26–37 s alone on 2 cores (../shared/ENGINES.md); two starting together take longer.
READY_DEADLINE_S = 180.0
BUILD_DEADLINE_S = 300.0
STOP_GRACE_S = 20.0
SERVED_MODEL = "tiny-llama"
#: What the gateway calls it (rewritten to SERVED_MODEL on the way to a replica).
PUBLIC_MODEL = "tiny-chat"
MAX_MODEL_LEN = 512
#: Sequences a replica runs at once (``--max-num-seqs``); more wait in its queue.
MAX_NUM_SEQS = 8

VLLM_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",  # /v1/load_lora_adapter, /v1/unload_lora_adapter
    "PYTHONUNBUFFERED": "1",
}


def skip_reason() -> str:
    """Why the tier cannot run here: make's verdict when it gave one, else the same checks."""
    if SKIP_ENV in os.environ:
        return os.environ[SKIP_ENV]
    return preflight.skip_reason(VLLM_VENV)


def require_venv() -> None:
    """Fail (never skip) when the virtualenv is not installed: the machine could hold it."""
    if not preflight.installed(VLLM_VENV):
        raise AssertionError(
            f"the engine tier's vLLM virtualenv {VLLM_VENV} is not installed: run `make engines` "
            f"(`make test` does it), or set {SKIP_ENV}=<reason> to leave the tier out")


def build_models() -> Path:
    """The cached tiny model build (``build/model``, ``build/lora``), made now if missing."""
    try:
        done = subprocess.run(
            [str(VLLM_PYTHON), str(BUILD_SCRIPT), str(MODELS_DIR)], capture_output=True,
            text=True, timeout=BUILD_DEADLINE_S, env={**os.environ, **VLLM_ENV}, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"building the tiny model took over {BUILD_DEADLINE_S:g}s") from exc
    if done.returncode != 0:
        raise AssertionError(f"building the tiny model failed ({done.returncode}):\n"
                             f"{done.stdout}\n{done.stderr[-6000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class VllmServer:
    """One vLLM OpenAI-compatible server on the CPU, serving ``model`` as ``SERVED_MODEL``."""

    def __init__(self, model: Path, workdir: Path, *, name: str, cpus: str | None = None,
                 args: Iterable[str] = ()) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / f"{name}-{self.port}.log"
        self.command = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
                        "--model", str(model), "--served-model-name", SERVED_MODEL,
                        "--host", "127.0.0.1", "--port", str(self.port),
                        "--dtype", "float32", "--max-model-len", str(MAX_MODEL_LEN),
                        "--max-num-seqs", str(MAX_NUM_SEQS), *args]
        self.env = {**os.environ, **VLLM_ENV}
        if cpus is not None:  # by default every replica binds its worker to core 0
            self.env["VLLM_CPU_OMP_THREADS_BIND"] = cpus
        self._start("wb")

    def _start(self, mode: str) -> None:
        with self.log_path.open(mode) as log:
            self.proc = subprocess.Popen(self.command, cwd=self.workdir, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        LIVE.add(self.proc)
        self.started = time.monotonic()
        self.ready_after_s: float | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def get(self, path: str, timeout: float = 5) -> bytes:
        with urllib.request.urlopen(f"{self.origin}{path}", timeout=timeout) as resp:
            return bytes(resp.read())

    def healthy(self) -> bool:
        try:
            self.get("/health", timeout=2)
        except (OSError, urllib.error.URLError):
            return False
        return True

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> VllmServer:
        end = self.started + deadline_s
        while not self.healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"vLLM {self.name} exited with {self.proc.returncode} "
                                     f"before it was healthy:\n{self.tail()}")
            if time.monotonic() > end:
                raise AssertionError(f"vLLM {self.name} not healthy after {deadline_s:g}s:\n"
                                     f"{self.tail()}")
            time.sleep(0.5)
        self.ready_after_s = time.monotonic() - self.started
        return self

    def metric(self, name: str, timeout: float = 5) -> float:
        """The sum of every series of ``name`` on this server's /metrics (labels ignored)."""
        pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", re.MULTILINE)
        text = self.get("/metrics", timeout=timeout).decode()
        return sum(float(value) for value in pattern.findall(text))

    def rss_mb(self) -> float:
        """Resident memory of the server and its children (engine core, worker), in MB."""
        total = 0
        for status in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = status.read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == self.proc.pid:  # its session: the one started here
                    total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        return total / 1e6

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM to the group, wait up to ``grace_s``, then SIGKILL whatever is left."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace_s)
        kill_group(self.proc)  # an engine core or worker that outlived the server
        code = self.proc.wait(10)
        LIVE.discard(self.proc)
        return code

    def kill(self) -> None:
        """SIGKILL the whole group (server, engine core, worker) at once: a crash, not a stop."""
        kill_group(self.proc)
        self.proc.wait(10)
        LIVE.discard(self.proc)

    def restart(self) -> VllmServer:
        """A new server with the same command on the same port (once this one is gone); its
        output is appended to the same log. Call ``wait_ready`` next."""
        if self.proc.poll() is None:
            self.stop()
        with self.log_path.open("ab") as log:
            log.write(f"\n----- restarted on port {self.port} -----\n".encode())
        self._start("ab")
        return self

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, chars: int = 6000) -> str:
        text = self.output()
        return text if len(text) <= chars else "…" + text[-chars:]
