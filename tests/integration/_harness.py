"""Process harness for the integration tier: real gateway processes, in-process fake engines.

Owns starting and stopping things and nothing else; no assertions about the
gateway's behaviour live here.

- ``FakeUpstreams`` runs ``tests.support.fake_upstream.FakeUpstream`` apps on
  one background thread with its own event loop, so a test can read
  ``FakeUpstream.requests`` (what the gateway actually sent). A subprocess
  would hide that list; the thread costs nothing and dies with pytest.
- ``Gateway`` is one ``python -m inferenceops serve`` process in its own
  process group (granian forks workers), its stdout+stderr captured to a file.
  ``stop`` sends SIGTERM, waits, then SIGKILLs the group; an ``atexit`` hook
  does the same for anything a crashed run left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.support.fake_upstream import FakeUpstream
from tests.support.process_groups import LIVE, kill_group

ADMIN_KEY = "sk-integration-admin"
UPSTREAM_KEY_ENV = "IO_IT_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-upstream-secret-7f3a9c"
READY_DEADLINE_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else takes it) but never listening."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@contextlib.contextmanager
def blackhole_port() -> Iterator[int]:
    """A port whose TCP handshakes never complete, so connecting to it times out.

    A listener with a backlog of 0 that never accepts, its accept queue filled
    by our own connections: Linux then drops further SYNs instead of refusing.
    """
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for sock in (*fillers, listener):
            sock.close()


class FakeUpstreams:
    """FakeUpstream apps served from one background event-loop thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-upstreams",
                                        daemon=True)
        self._runners: list[web.AppRunner] = []
        self._thread.start()

    def serve(self, fake: FakeUpstream) -> str:
        """Start serving ``fake``; returns its API base URL (``http://127.0.0.1:P/v1``)."""
        runner, port = asyncio.run_coroutine_threadsafe(self._start(fake), self._loop).result(10)
        self._runners.append(runner)
        return f"http://127.0.0.1:{port}/v1"

    @staticmethod
    async def _start(fake: FakeUpstream) -> tuple[web.AppRunner, int]:
        # Like fake_upstream.start, but a dropped connection cancels its handler (the
        # ``stall`` behaviour would otherwise sleep for an hour) and cleanup is quick.
        runner = web.AppRunner(fake.app(), access_log=None, shutdown_timeout=1.0,
                               handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def close(self) -> None:
        for runner in self._runners:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def platform_yaml(deployments: list[dict[str, Any]], models: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({"deployments": deployments, "models": models}, sort_keys=False)


def gateway_env(extra: dict[str, str] | None = None, *, admin_key: str | None = ADMIN_KEY,
                ) -> dict[str, str]:
    """The parent's environment minus every INFERENCEOPS_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCEOPS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env[UPSTREAM_KEY_ENV] = UPSTREAM_KEY
    if admin_key is not None:
        env["INFERENCEOPS_ADMIN_KEY"] = admin_key
    env.update(extra or {})
    return env


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "inferenceops", "serve", *args]


class Gateway:
    """One gateway server process."""

    def __init__(self, workdir: Path, *, config: str | None = None,
                 env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                 admin_key: str | None = ADMIN_KEY, data_dir: Path | None = None,
                 name: str = "gateway") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.key = admin_key
        self.data_dir = data_dir or workdir / "data"
        self.log_path = workdir / f"{name}-{self.port}.log"
        command = ["--port", str(self.port), "--data-dir", str(self.data_dir), *args]
        if config is not None:
            config_path = workdir / f"{name}-platform.yaml"
            config_path.write_text(config, encoding="utf-8")
            command += ["--config", str(config_path)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                serve_command(*command), cwd=workdir, env=gateway_env(env, admin_key=admin_key),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        LIVE.add(self.proc)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.origin}/readyz", timeout=1) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> Gateway:
        end = time.monotonic() + deadline_s
        while not self.ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode} before "
                                     f"it was ready:\n{self.output()}")
            if time.monotonic() > end:
                raise AssertionError(f"{self.name} not ready after {deadline_s:g}s:\n"
                                     f"{self.output()}")
            time.sleep(0.05)
        return self

    def signal(self, sig: int = signal.SIGTERM) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL whatever of the group is left."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace_s)
        kill_group(self.proc)  # stray workers, or a main process that ignored SIGTERM
        code = self.proc.wait(10)
        LIVE.discard(self.proc)
        return code

    def tail(self, chars: int = 6000) -> str:
        text = self.output()
        return text if len(text) <= chars else "…" + text[-chars:]


SpawnGateway = Callable[..., Gateway]
