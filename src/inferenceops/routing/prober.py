"""Readiness probes: a supervised service asking each self-hosted replica whether it can serve.

Every ``interval_s`` it reads the catalog the process serves now and, for each
replica of each probed deployment (``Deployment.probed``: self-hosted engines;
an external provider is judged by its answers alone), asks at once, within
``timeout_s`` for the pair:

* ``GET <server root>/health`` — vLLM, SGLang, TGI, llama.cpp and the simulator
  answer 200 once the engine runs; a 404 means the engine has no such endpoint
  (Ollama) and is not held against it;
* ``GET <base_url>/models`` — the model is loaded and the API answers: 200
  whose ``data`` lists the deployment's ``served_model`` (when it lists ids).

A replica is ready when neither failed and at least one said 200. The model list also
names the LoRA adapters the replica holds (entries with a ``parent``): they go to the
adapter residency record (``AdapterResidency.observed``), which so learns that a restarted
replica holds none, or what another gateway process loaded there. The verdict
goes to ``FleetHealth.probed``: a success turns an OPEN breaker HALF_OPEN and
closes a HALF_OPEN one (so a restarted engine is back within about one
interval), a failure counts like a failed request. Each round also runs
``FleetHealth.check_hung``. The loop, the pools and the concurrency are
``routing.replica_poller``'s. Never raises out of ``run`` for an engine's
misbehaviour.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Iterable
from typing import Any
from urllib.parse import urlsplit

import orjson

from inferenceops import __version__
from inferenceops.engines.http1 import HTTPClientError, Pool
from inferenceops.platform import Deployment, Replica
from inferenceops.routing.adapters import AdapterResidency
from inferenceops.routing.health import FleetHealth
from inferenceops.routing.replica_poller import ReplicaPoller
from inferenceops.routing.scraper import metrics_url

log = logging.getLogger("inferenceops.routing.prober")

#: A /v1/models answer larger than this is not read whole (a model list is small).
MAX_MODELS_BYTES = 1024 * 1024


class ProbeFailed(Exception):
    """Why one replica is not ready; short, and naming no address."""


def health_url(base_url: str) -> str:
    """``http://h:p/v1`` → ``http://h:p/health`` (the engine's server root)."""
    return metrics_url(base_url)[: -len("metrics")] + "health"


class _Target:
    __slots__ = ("pool", "health_head", "models_head", "served_model", "max_loras", "adapters")

    def __init__(self, replica: Replica, deployment: Deployment, timeout_s: float) -> None:
        self.pool = Pool(replica.base_url, max_connections=1, connect_timeout_s=timeout_s)
        self.served_model = deployment.served_model
        self.max_loras = deployment.max_loras
        self.adapters: set[str] | None = None  # what the last model list named as adapters
        auth = f"Authorization: Bearer {deployment.api_key}\r\n" if deployment.api_key else ""
        common = (f"Host: {self.pool.host_header}\r\nUser-Agent: inferenceops/{__version__}\r\n"
                  f"Accept: application/json\r\nAccept-Encoding: identity\r\n{auth}\r\n")
        health_path = urlsplit(health_url(replica.base_url)).path
        models_path = urlsplit(replica.base_url).path.rstrip("/") + "/models"
        self.health_head = f"GET {health_path} HTTP/1.1\r\n{common}".encode("latin-1")
        self.models_head = f"GET {models_path} HTTP/1.1\r\n{common}".encode("latin-1")


class ReadinessProber(ReplicaPoller[_Target]):
    """Probes every probed replica each ``interval_s`` into ``health`` (a supervised service)."""

    def __init__(self, deployments: Callable[[], Iterable[Deployment]], health: FleetHealth, *,
                 interval_s: float = 2.0, timeout_s: float = 1.0,
                 name: str = "readiness-probes", adapters: AdapterResidency | None = None) -> None:
        super().__init__(deployments, interval_s=interval_s, timeout_s=timeout_s, name=name,
                         what="probe")
        self.health = health
        self.adapters = adapters
        self._down: set[str] = set()  # replicas whose last probe failed (logged once per change)

    def polled(self, deployment: Deployment) -> bool:
        return deployment.probed

    def target_key(self, deployment: Deployment, replica: Replica) -> Hashable:
        return replica.base_url, deployment.served_model, deployment.api_key, deployment.max_loras

    def target(self, deployment: Deployment, replica: Replica) -> _Target:
        return _Target(replica, deployment, self.timeout_s)

    async def poll_once(self) -> dict[str, str | None]:
        return await self.probe_once()

    async def probe_once(self) -> dict[str, str | None]:
        """One round: every target at once. Replica id → None (ready) or why not."""
        targets, every = self.sync_targets()
        self.health.forget(every)
        out: dict[str, str | None] = {}
        for replica_id, result in (await self.ask_all(targets, self._probe)).items():
            why = None if result is None else str(result)
            out[replica_id] = why
            self.health.probed(replica_id, why is None, why or "")
            listed = targets[replica_id].adapters
            if why is None and listed is not None and self.adapters is not None:
                self.adapters.observed(replica_id, listed, targets[replica_id].max_loras)
            if why is None and replica_id in self._down:
                self._down.discard(replica_id)
                log.info("replica %s is ready again", replica_id)
            elif why is not None and replica_id not in self._down:
                self._down.add(replica_id)
                log.warning("replica %s is not ready: %s", replica_id, why)
        for replica_id in self.health.check_hung():
            log.warning("replica %s suspected hung: its streams made no progress for %gs",
                        replica_id, self.health.hung_after_s)
        return out

    async def _probe(self, target: _Target) -> None:
        target.adapters = None
        try:
            async with asyncio.timeout(self.timeout_s):
                health_status, _ = await self._get(target, target.health_head, 4096)
                models_status, body = await self._get(target, target.models_head,
                                                      MAX_MODELS_BYTES)
        except TimeoutError:
            raise ProbeFailed(f"no answer within {self.timeout_s:g}s") from None
        except HTTPClientError as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise ProbeFailed(f"unreachable ({reason})") from None
        if health_status not in (200, 404):
            raise ProbeFailed(f"/health answered {health_status}")
        if models_status == 404 and health_status == 200:
            return None  # no model list to check; the engine says it is healthy
        if models_status != 200:
            raise ProbeFailed(f"/v1/models answered {models_status}")
        listed = _model_ids(body)
        target.adapters = _adapter_ids(body)
        if listed is not None and target.served_model not in listed:
            raise ProbeFailed(f"/v1/models does not list {target.served_model!r}")
        return None

    @staticmethod
    async def _get(target: _Target, head: bytes, limit: int) -> tuple[int, bytes]:
        conn = await target.pool.request(head, idempotent=True)
        status = conn.status  # before read_body settles (resets) the connection
        body, _ = await conn.read_body(limit)
        return status, body


def _listed(body: bytes) -> list[dict[str, Any]] | None:
    """The entries of an OpenAI model list, or None when it is not one."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        return None
    return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


def _model_ids(body: bytes) -> set[str] | None:
    """The ids an OpenAI model list names, or None when it is not one."""
    listed = _listed(body)
    return None if listed is None else {m["id"] for m in listed}


def _adapter_ids(body: bytes) -> set[str] | None:
    """The LoRA adapters an OpenAI model list names (vLLM lists each with its ``parent``)."""
    listed = _listed(body)
    return None if listed is None else {m["id"] for m in listed if m.get("parent")}
