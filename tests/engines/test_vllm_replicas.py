"""Replica health and engine-aware routing in front of real vLLM: which replica got each request.

Each test starts a gateway of its own over the package's two replicas (a second
gateway costs a second; replicas cost a minute), so its settings and routing do
not touch the package gateway the other tests use. Which replica served a request
is read from the gateway's usage ledger (``usage_records.replica``, flushed to
its SQLite file within a second), found by the ``x-request-id`` the test sent;
each replica's own ``vllm:*`` counters cross-check it.

* **Engine metrics drive routing** (``routing: engine_load``): one replica is
  held busy directly, bypassing the gateway — far more long generations than it
  runs at once, so its ``vllm:num_requests_running`` is full and
  ``vllm:num_requests_waiting`` long — and every gateway request sent while
  that lasts goes to the other replica. Once the busy work is gone, the gateway
  uses both again: the preference came from the engine's metrics.
* **A killed replica** (SIGKILL to its process group, under load from a few
  client threads using the ``openai`` SDK): only requests that were on it may
  fail, its breaker opens within a second, the other replica answers the rest
  (a refused connection is retried there), and once it is restarted on the same
  port and healthy it is used again within a few seconds.
"""

from __future__ import annotations

import os
import re
import select
import socket
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.engines._vllm import MAX_NUM_SEQS, PUBLIC_MODEL, SERVED_MODEL, VllmServer
from tests.engines.conftest import DEPLOYMENT, make_team_key, start_gateway, stop_gateway
from tests.integration._harness import Gateway

SUCCESS = "vllm:request_success_total"
RUNNING, WAITING = "vllm:num_requests_running", "vllm:num_requests_waiting"
#: The gateway's usage records reach its SQLite file within the outbox's flush (1 s).
LEDGER_DEADLINE_S = 10.0
_ids = count()


def _rid(tag: str) -> str:
    return f"engines-{tag}-{next(_ids)}-{time.monotonic_ns()}"


def replica_id(i: int) -> str:
    return f"{DEPLOYMENT}-{i}"


def served_by(gw: Gateway, request_ids: list[str]) -> dict[str, str | None]:
    """Request id → the replica its usage record names, once every one is in the ledger."""
    end = time.monotonic() + LEDGER_DEADLINE_S
    found: dict[str, str | None] = {}
    while True:
        with sqlite3.connect(gw.data_dir / "inferenceops.db", timeout=5) as db:
            for start in range(0, len(request_ids), 500):
                part = request_ids[start:start + 500]
                marks = ",".join("?" * len(part))
                found.update(db.execute(f"SELECT request_id, replica FROM usage_records "  # noqa: S608
                                        f"WHERE request_id IN ({marks})", part).fetchall())
        if len(found) == len(request_ids):
            return found
        missing = sorted(set(request_ids) - set(found))
        assert time.monotonic() < end, f"{len(missing)} requests not in the ledger: {missing[:5]}"
        time.sleep(0.2)


def gateway_metric(gw: Gateway, name: str, replica: str) -> float | None:
    """One per-replica series of the gateway's own /metrics (read from loopback)."""
    with urllib.request.urlopen(f"{gw.origin}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(rf'^{name}{{deployment="{DEPLOYMENT}",replica="{replica}"}} (\S+)$', text,
                      re.MULTILINE)
    return None if found is None else float(found.group(1))


def ask(sdk: openai.OpenAI, rid: str) -> None:
    """One short greedy chat through the gateway, tagged with ``rid``."""
    sdk.chat.completions.create(model=PUBLIC_MODEL, max_tokens=4, temperature=0,
                                messages=[{"role": "user", "content": "Say something."}],
                                extra_headers={"x-request-id": rid})


@pytest.fixture
def own_gateway(tmp_path: Path, replicas: list[VllmServer]) -> Iterator[Callable[..., Gateway]]:
    """Starts gateways over the package's replicas for this test alone; stops them after it."""
    started: list[Gateway] = []

    def start(name: str, **kwargs: Any) -> Gateway:
        gw = start_gateway(tmp_path / name, replicas, name=name, **kwargs)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        stop_gateway(gw)


def sdk_for(gw: Gateway) -> openai.OpenAI:
    """The ``openai`` SDK on ``gw`` with a team's key; no SDK retries: each call is one request."""
    return openai.OpenAI(base_url=gw.base_url, api_key=make_team_key(gw), max_retries=0,
                         timeout=60)


# ---- engine metrics drive routing -----------------------------------------------------------

#: Held on the busy replica: all it runs at once and a queue behind them, for as long as the
#: test needs. The tiny model decodes a few thousand tokens a second, so one request is over in
#: a second or two and a fixed queue drains at whatever speed the machine has that day (in CI
#: 128 were sometimes gone before the test's own steps): each held request that ends is
#: replaced at once, so the queue stays this long until released, however fast it drains.
HELD = 64
HELD_TOKENS = 480
#: A busy replica takes both cores of a 2-core machine (its worker, engine core and API server
#: all spin): its engine runs niced while busy, so the other replica and the gateway keep
#: theirs. Its API server, busy turning thousands of tokens a second into answers, answers
#: /metrics and probes slowly: the gateway waits longer for a scrape (one older than 4 s is
#: stale: the gateway then goes by its own in-flight counts, 0 and 0) and its breakers do not
#: open on slow probes (the test checks they never opened: health plays no part here).
ENGINE_LOAD_ENV = {"INFERENCEOPS_ENGINE_METRICS_INTERVAL_S": "0.5",
                   "INFERENCEOPS_ENGINE_METRICS_TIMEOUT_S": "2",
                   "INFERENCEOPS_ENGINE_METRICS_STALE_AFTER": "8",
                   "INFERENCEOPS_HEALTH_PROBE_TIMEOUT_S": "10",
                   "INFERENCEOPS_BREAKER_FAILURES": "1000"}
BUSY_NICE = 15
#: The other replica is idle but shares the cores: its requests and /metrics have taken up to
#: ~5 s to answer in a busy spell (direct requests too, not only the gateway's), so the test's
#: own reads wait up to 30 s.
#: Long enough, after the test's own read of the busy replica's /metrics, for one of the
#: gateway's scrapes to come back.
SCRAPED_WITHIN_S = 3.0
THROUGH_GATEWAY = 10


class HeldRequests:
    """``n`` long non-streamed completions kept outstanding on a replica, sent straight to it
    over raw sockets, until released: a thread watches the sockets and, when one's answer
    arrives (its request is over), sends a new request in its place. Closing the sockets ends
    them (vLLM aborts a request whose client left)."""

    def __init__(self, server: VllmServer, n: int) -> None:
        body = orjson.dumps({"model": SERVED_MODEL, "prompt": "Hold on.", "max_tokens": HELD_TOKENS,
                             "ignore_eos": True, "temperature": 1.0})
        head = (f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.port, self.request = server.port, head + body
        self.replaced = 0
        self.sockets = {self._send() for _ in range(n)}
        self.released = threading.Event()
        self.keeper = threading.Thread(target=self._keep_up, daemon=True)
        self.keeper.start()

    def _send(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(self.request)
        return sock

    def _keep_up(self) -> None:
        while not self.released.is_set():
            answered, _, _ = select.select(list(self.sockets), [], [], 0.1)
            for sock in answered:  # readable: its whole answer came (or the server hung up)
                self.sockets.discard(sock)
                sock.close()
                if not self.released.is_set():
                    self.sockets.add(self._send())
                    self.replaced += 1

    def release(self) -> None:
        self.released.set()
        self.keeper.join(10)
        for sock in self.sockets:
            sock.close()


def _engine_threads(server: VllmServer) -> list[int]:
    """Every thread of the server's engine core and worker: its group but its API server."""
    tids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, pgid = int(stat.parent.name), int(stat.read_text().rsplit(")", 1)[1].split()[2])
            if pgid == server.proc.pid and pid != server.proc.pid:
                tids += [int(task.name) for task in (stat.parent / "task").iterdir()]
        except (OSError, IndexError, ValueError):
            continue
    return tids


@contextmanager
def niced(server: VllmServer, nice: int) -> Iterator[None]:
    """The server's engine core and worker at ``nice`` for the block (then back to 0); its API
    server, which answers /metrics and probes, stays as it was."""
    tids = _engine_threads(server)
    assert tids, f"no engine process found in {server.name}'s group"
    for tid in tids:
        with suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    try:
        yield
    finally:
        for tid in _engine_threads(server):
            with suppress(ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, tid, 0)


def _queue(server: VllmServer) -> tuple[float, float]:
    """The replica's own ``vllm:num_requests_running`` and ``vllm:num_requests_waiting``."""
    return server.metric(RUNNING, timeout=30), server.metric(WAITING, timeout=30)


def _wait_for_queue(server: VllmServer, ok: Callable[[float, float], bool], what: str,
                    deadline_s: float = 60.0) -> tuple[float, float]:
    end = time.monotonic() + deadline_s
    while not ok(*(seen := _queue(server))):
        assert time.monotonic() < end, f"{server.name} not {what} after {deadline_s:g}s: {seen}"
        time.sleep(0.1)
    return seen


def test_engine_load_routes_around_a_replica_its_metrics_show_busy(
        replicas: list[VllmServer], own_gateway: Callable[..., Gateway]) -> None:
    gw = own_gateway("engine-load-gateway", routing="engine_load", env=ENGINE_LOAD_ENV)
    busy, idle = replicas
    with sdk_for(gw) as sdk:
        for _ in range(2):  # the gateway's connections to both replicas are open
            ask(sdk, _rid("warm"))
        _wait_for_queue(busy, lambda running, waiting: running == waiting == 0, "idle")
        with niced(busy, BUSY_NICE):
            held = HeldRequests(busy, HELD)
            try:
                _wait_for_queue(busy, lambda running, waiting: running == MAX_NUM_SEQS
                                and waiting >= HELD // 2, "busy")
                time.sleep(SCRAPED_WITHIN_S)
                before = idle.metric(SUCCESS, timeout=30)
                sent = [_rid("while-busy") for _ in range(THROUGH_GATEWAY)]
                began = time.monotonic()
                for rid in sent:
                    ask(sdk, rid)
                took = time.monotonic() - began
                served_by_idle = idle.metric(SUCCESS, timeout=30) - before
                running, waiting = _queue(busy)
                print(f"\n{THROUGH_GATEWAY} requests through the gateway in {took:.2f}s while "
                      f"the busy replica ran {running:g} and queued {waiting:g} "
                      f"({held.replaced} held requests replaced)")
                assert running == MAX_NUM_SEQS and waiting > 0, \
                    f"the busy spell ended before the gateway requests did: {running}, {waiting}"
            finally:
                held.release()
        assert set(served_by(gw, sent).values()) == {replica_id(1)}
        assert served_by_idle == THROUGH_GATEWAY
        for i in range(2):
            assert gateway_metric(gw, "inferenceops_replica_breaker_opens_total",
                                  replica_id(i)) == 0

        # The held requests gone, both replicas idle: the gateway spreads its work again.
        _wait_for_queue(busy, lambda running, waiting: running == waiting == 0, "idle again")
        time.sleep(SCRAPED_WITHIN_S)
        sent = [_rid("after") for _ in range(8)]
        for rid in sent:
            ask(sdk, rid)
        assert set(served_by(gw, sent).values()) == {replica_id(0), replica_id(1)}


# ---- a killed replica -----------------------------------------------------------------------

CLIENTS = 4
FAST_HEALTH = {"INFERENCEOPS_HEALTH_PROBE_INTERVAL_S": "0.3",
               "INFERENCEOPS_HEALTH_PROBE_TIMEOUT_S": "1",
               "INFERENCEOPS_BREAKER_OPEN_S": "0.5", "INFERENCEOPS_SLOW_START_S": "2"}
BREAKER_OPEN_WITHIN_S = 1.0
USED_AGAIN_WITHIN_S = 5.0
RESTART_PAUSE_S = 2.0
ALONE_S = 1.0
RESTART_DEADLINE_S = 300.0
RESTORED_DEADLINE_S = 30.0


@dataclass(frozen=True)
class Sent:
    rid: str
    began: float
    ended: float
    error: str | None  # None: answered in full; else the SDK's exception, status and code


class Load:
    """``CLIENTS`` threads sending short chats through the gateway one after another (every
    other client streams), each request tagged with its own ``x-request-id``; ``pause_s``
    between two requests of a client (0: none)."""

    def __init__(self, sdk: openai.OpenAI) -> None:
        self.sdk = sdk
        self.pause_s = 0.0
        self.sent: list[Sent] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                        for i in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(90)

    def _client(self, i: int) -> None:
        stream = i % 2 == 1
        messages = [{"role": "user", "content": f"Client {i} says hello."}]
        while not self.stop.is_set():
            rid, began = _rid(f"load{i}"), time.monotonic()
            error = None
            try:
                answer = self.sdk.chat.completions.create(
                    model=PUBLIC_MODEL, messages=messages, max_tokens=8, temperature=0,  # type: ignore[arg-type]
                    stream=stream, extra_headers={"x-request-id": rid})
                if stream:
                    for _ in answer:  # type: ignore[union-attr]
                        pass
            except openai.APIError as exc:
                status = getattr(exc, "status_code", None)
                error = f"{type(exc).__name__} {status} {exc.code}"
            self.sent.append(Sent(rid, began, time.monotonic(), error))
            if self.pause_s:
                self.stop.wait(self.pause_s)

    def answered_since(self, at: float) -> int:
        return sum(1 for s in list(self.sent) if s.began > at and s.error is None)


@pytest.fixture
def victim(replicas: list[VllmServer], engine_gateway: Gateway) -> Iterator[VllmServer]:
    """Replica 0, to be killed; afterwards healthy again and back at full weight in the package
    gateway, whatever the test did, so the other engine tests do not notice."""
    server = replicas[0]
    yield server
    if not server.healthy():
        server.restart().wait_ready()
    end = time.monotonic() + RESTORED_DEADLINE_S
    while gateway_metric(engine_gateway, "inferenceops_replica_weight", replica_id(0)) != 1:
        assert time.monotonic() < end, "the package gateway did not take replica 0 back"
        time.sleep(0.2)


def test_a_killed_replica_costs_only_its_requests_and_is_used_again_after_restart(
        replicas: list[VllmServer], victim: VllmServer,
        own_gateway: Callable[..., Gateway]) -> None:
    gw = own_gateway("failover-gateway", env=FAST_HEALTH)
    other = replicas[1]
    assert replicas.index(victim) == 0
    with sdk_for(gw) as sdk, Load(sdk) as load:
        before = victim.metric(SUCCESS), other.metric(SUCCESS)
        end = time.monotonic() + 30
        while not (victim.metric(SUCCESS) > before[0] and other.metric(SUCCESS) > before[1]):
            assert time.monotonic() < end, "the load did not reach both replicas"
            time.sleep(0.1)

        victim.kill()  # SIGKILL to its process group: server, engine core and worker at once
        killed_at = time.monotonic()
        while gateway_metric(gw, "inferenceops_replica_breaker_state", replica_id(0)) != 1:
            assert time.monotonic() - killed_at < BREAKER_OPEN_WITHIN_S, \
                f"the breaker did not open within {BREAKER_OPEN_WITHIN_S:g}s"
            time.sleep(0.02)
        opened_after = time.monotonic() - killed_at
        time.sleep(ALONE_S)  # the other replica carries the whole load for a while

        # The same port. The clients pause while it starts: closed-loop clients keep the other
        # replica and the gateway busy enough to starve a starting vLLM on 2 cores for minutes.
        load.pause_s = RESTART_PAUSE_S
        restarted_at = time.monotonic()
        victim.restart().wait_ready(RESTART_DEADLINE_S)
        load.pause_s = 0.0
        ready_at = time.monotonic()
        down = (killed_at, ready_at)
        while victim.metric(SUCCESS) == 0:  # a fresh process: its counter starts at 0
            assert time.monotonic() - ready_at < USED_AGAIN_WITHIN_S, \
                f"the restarted replica was not used within {USED_AGAIN_WITHIN_S:g}s of being ready"
            time.sleep(0.1)
        used_after = time.monotonic() - ready_at
        time.sleep(1.0)
        assert gateway_metric(gw, "inferenceops_replica_breaker_state", replica_id(0)) == 0
    sent = list(load.sent)
    failed = [s for s in sent if s.error is not None]
    print(f"\n{len(sent)} requests, {len(failed)} failed; breaker open after {opened_after:.3f}s, "
          f"replica down {down[1] - down[0]:.1f}s, used {used_after:.2f}s after it was ready")
    # Only requests already on the killed replica may fail: begun before the kill, at most one
    # per client, each recorded on that replica. Nothing sent afterwards saw an error.
    assert len(failed) <= CLIENTS, failed
    assert all(s.began < killed_at for s in failed), failed
    replicas_of = served_by(gw, [s.rid for s in sent])
    assert {replicas_of[s.rid] for s in failed} <= {replica_id(0)}, failed
    assert load.answered_since(killed_at) > 2 * CLIENTS
    # While nothing ran on its port: once restarted it may serve before ``wait_ready`` (which
    # polls every 0.5 s) notices, and the gateway's faster probes may already use it.
    during = [s for s in sent if killed_at < s.began and s.ended < restarted_at]
    assert during and {replicas_of[s.rid] for s in during} == {replica_id(1)}
    assert replica_id(0) in {replicas_of[s.rid] for s in sent if s.began > ready_at}
