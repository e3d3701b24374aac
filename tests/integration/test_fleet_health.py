"""Replica health under a real server: two simulated engines as processes of their own.

One replica is killed with SIGKILL while several clients keep sending: only
requests that were already on it may fail (they reached it), its breaker opens
at once, and after it is restarted on the same port it serves again within a
few seconds (readiness probes half-open the breaker, slow start ramps it in).
With every replica down the answer is 503 with Retry-After naming the model,
at once. Drain and undrain go through the admin API to every worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.integration._harness import ADMIN_KEY, Gateway, SpawnGateway, free_port, platform_yaml
from tests.support.process_groups import LIVE, kill_group

pytestmark = pytest.mark.integration

MODEL = "fleet-chat"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
CLIENTS = 6
FAST_HEALTH = {"INFERENCEOPS_HEALTH_PROBE_INTERVAL_S": "0.3",
               "INFERENCEOPS_HEALTH_PROBE_TIMEOUT_S": "0.5",
               "INFERENCEOPS_BREAKER_OPEN_S": "0.5", "INFERENCEOPS_SLOW_START_S": "2"}


class Engine:
    """``inferenceops simulate`` on a fixed port, in its own process group."""

    def __init__(self, workdir: Path, port: int, name: str) -> None:
        self.workdir, self.port, self.name = workdir, port, name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Engine:
        with (self.workdir / f"{self.name}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "inferenceops", "simulate", "--host", "127.0.0.1",
                 "--port", str(self.port), "--profile", "test-fast", "--model", "m",
                 "--server", "uvicorn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        LIVE.add(self.proc)
        deadline = time.monotonic() + 30
        while not self.served() >= 0:
            assert time.monotonic() < deadline, f"{self.name} did not start"
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        kill_group(self.proc)
        self.proc.wait(10)
        LIVE.discard(self.proc)

    def served(self) -> int:
        """Requests this process answered (its vLLM counter); -1 while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=1) as r:
                text = r.read().decode()
        except OSError:
            return -1
        return int(sum(float(v) for v in re.findall(
            r"^vllm:request_success_total\{[^}]*\} (\S+)$", text, re.M)))


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[list[Engine]]:
    started = [Engine(tmp_path, free_port(), f"engine-{i}").start() for i in range(2)]
    yield started
    for engine in started:
        if engine.proc is not None and engine.proc.poll() is None:
            engine.kill()


def fleet_gateway(spawn: SpawnGateway, engines: list[Engine], routing: str,
                  env: dict[str, str] | None = None) -> Gateway:
    deployment = {"name": "fleet", "engine": "openai", "served_model": "m", "routing": routing,
                  "timeouts": {"connect_s": 1},
                  "replicas": [{"url": f"http://127.0.0.1:{e.port}/v1"} for e in engines]}
    return spawn(config=platform_yaml([deployment], [{"name": MODEL, "deployment": "fleet"}]),
                 env={**FAST_HEALTH, **(env or {})})


def gauge(gw: Gateway, name: str, replica: str) -> float | None:
    with urllib.request.urlopen(f"{gw.origin}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    found = re.search(rf'^{name}{{deployment="fleet",replica="{replica}"}} (\S+)$', text, re.M)
    return None if found is None else float(found.group(1))


@dataclass
class Load:
    """Clients sending one short request after another; what each got, and when."""

    url: str
    results: list[tuple[float, float, int, str | None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, http: aiohttp.ClientSession, i: int) -> None:
        body = {"model": MODEL, "max_tokens": 4,
                "messages": [{"role": "user", "content": f"client {i}"}]}
        while not self.stop.is_set():
            began = time.monotonic()
            async with http.post(self.url, json=body, headers=AUTH) as resp:
                doc = await resp.json()
            code = None if resp.status == 200 else doc["error"]["code"]
            self.results.append((began, time.monotonic(), resp.status, code))

    def failures(self) -> list[tuple[float, float, int, str | None]]:
        return [r for r in self.results if r[2] != 200]


async def test_a_killed_replica_costs_only_its_requests_and_comes_back(
        spawn_gateway: SpawnGateway, engines: list[Engine]) -> None:
    gw = fleet_gateway(spawn_gateway, engines, "least_outstanding")
    load = Load(f"{gw.base_url}/chat/completions")
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        clients = [asyncio.create_task(load.client(http, i)) for i in range(CLIENTS)]
        try:
            await asyncio.sleep(1.0)
            assert engines[0].served() > 0 and engines[1].served() > 0  # both in use
            killed_at = time.monotonic()
            engines[0].kill()
            loop = asyncio.get_running_loop()
            while gauge(gw, "inferenceops_replica_breaker_state", "fleet-0") != 1:
                assert loop.time() - killed_at < 1.0, "the breaker did not open within 1 s"
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.5)
            engines[0].start()  # the same port
            restarted_at = time.monotonic()
            while engines[0].served() <= 0:
                assert time.monotonic() - restarted_at < 5.0, "not used again within 5 s"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
        finally:
            load.stop.set()
            await asyncio.gather(*clients)
    failures = load.failures()
    # Only requests already on the killed engine may fail (at most one per client), and only
    # as having reached it — never a refused connection shown to a client.
    assert len(failures) <= CLIENTS, failures
    assert all(began <= killed_at and code in ("upstream_unavailable", "upstream_server_error")
               for began, _, _, code in failures), failures
    assert sum(1 for r in load.results if r[0] > killed_at and r[2] == 200) > 50
    assert gauge(gw, "inferenceops_replica_breaker_state", "fleet-0") == 0


async def test_every_replica_down_is_503_with_retry_after_at_once(
        spawn_gateway: SpawnGateway, engines: list[Engine]) -> None:
    gw = fleet_gateway(spawn_gateway, engines, "round_robin")
    for engine in engines:
        engine.kill()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "anyone?"}]}
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            began = time.monotonic()
            async with http.post(f"{gw.base_url}/chat/completions", json=body,
                                 headers=AUTH) as resp:
                doc = await resp.json()
            assert time.monotonic() - began < 1.0  # connect_s
            assert resp.status == 503, doc
            assert int(resp.headers["Retry-After"]) >= 1
            assert doc["error"]["code"] == "no_replica_available"
            assert f"'{MODEL}'" in doc["error"]["message"]


def test_scraped_engine_state_is_on_metrics_and_goes_stale_when_the_engine_dies(
        spawn_gateway: SpawnGateway, engines: list[Engine]) -> None:
    gw = fleet_gateway(spawn_gateway, engines, "engine_load",
                       env={"INFERENCEOPS_ENGINE_METRICS_INTERVAL_S": "0.2",
                            "INFERENCEOPS_ENGINE_METRICS_TIMEOUT_S": "0.2"})
    deadline = time.monotonic() + 10
    while any(gauge(gw, "inferenceops_engine_scrape_age_seconds", f"fleet-{i}") is None
              for i in range(2)):
        assert time.monotonic() < deadline, "the engines were not scraped"
        time.sleep(0.1)
    for i in range(2):
        assert gauge(gw, "inferenceops_engine_requests_running", f"fleet-{i}") == 0
        assert gauge(gw, "inferenceops_engine_kv_cache_usage_ratio", f"fleet-{i}") is not None
        assert gauge(gw, "inferenceops_engine_scrape_stale", f"fleet-{i}") == 0
    engines[1].kill()
    while gauge(gw, "inferenceops_engine_scrape_stale", "fleet-1") != 1:
        assert time.monotonic() < deadline + 10, "a dead engine's scrape never went stale"
        time.sleep(0.1)
    assert gauge(gw, "inferenceops_engine_scrape_stale", "fleet-0") == 0


def cli(gw: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCEOPS_")}
    env.update({"INFERENCEOPS_URL": gw.origin, "INFERENCEOPS_ADMIN_KEY": ADMIN_KEY})
    return subprocess.run([sys.executable, "-m", "inferenceops", *args], env=env, text=True,
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def test_a_drained_replica_takes_no_new_work_until_undrained(
        spawn_gateway: SpawnGateway, engines: list[Engine]) -> None:
    gw = fleet_gateway(spawn_gateway, engines, "round_robin")
    body = json.dumps({"model": MODEL, "max_tokens": 2,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()

    def send(n: int) -> None:
        for _ in range(n):
            req = urllib.request.Request(f"{gw.base_url}/chat/completions", data=body,
                                         headers={**AUTH, "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 200

    drained = cli(gw, "deployments", "drain", "fleet", "fleet-0", "--json")
    assert drained.returncode == 0, drained.stderr
    assert [r["drained"] for r in json.loads(drained.stdout)["replicas"]] == [True, False]
    time.sleep(1.5)  # the snapshot feed's refresh (this process's own change wakes it at once)
    before = engines[0].served()
    send(10)
    assert engines[0].served() == before  # none went to the drained replica
    assert gauge(gw, "inferenceops_replica_drained", "fleet-0") == 1
    undrained = cli(gw, "deployments", "undrain", "fleet", "fleet-0")
    assert undrained.returncode == 0, undrained.stderr
    time.sleep(1.5)
    send(10)
    assert engines[0].served() > before
    shown = cli(gw, "deployments", "replicas", "fleet", "--json")
    replicas = json.loads(shown.stdout)["replicas"]
    assert [(r["id"], r["drained"], r["health"]["state"]) for r in replicas] == [
        ("fleet-0", False, "closed"), ("fleet-1", False, "closed")]
    with urllib.request.urlopen(urllib.request.Request(
            f"{gw.origin}/admin/api/v1/audit?limit=100", headers=AUTH), timeout=10) as resp:
        actions = [e["action"] for e in json.loads(resp.read())["data"]]
    assert "deployment.drain" in actions and "deployment.undrain" in actions
    unknown = cli(gw, "deployments", "drain", "fleet", "fleet-7")
    assert unknown.returncode != 0 and "fleet-7" in unknown.stderr
