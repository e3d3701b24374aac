"""LoRA adapter residency: which adapters this process has loaded on which replica.

A request naming an adapter goes to its base model's primary deployment, to a replica where
the adapter is *resident* (this record says it was loaded there), chosen by the deployment's
own strategy among those (``AdapterAffinity``). When none holds it, the strategy picks among
all replicas and ``acquire`` loads it there first (vLLM's ``POST /v1/load_lora_adapter``):

* **single flight** — one load per (replica, adapter) at a time; every request that needs the
  same one waits for that load (``_loading``). The load runs as its own task, so the request
  that started it may leave without cancelling it for the others;
* **bounded** — a load that takes longer than ``load_timeout_s`` fails (``AdapterLoadFailed``,
  502), as does an engine that refuses it; never a hang, never a 500;
* **slots** — a replica holds at most ``Deployment.max_loras`` adapters (loads in progress
  count). When full, the least recently used adapter *with no request in flight* is taken off
  the record at once and unloaded (``/v1/unload_lora_adapter``) before the load; when every
  resident adapter has requests in flight, ``AdapterSlotsBusy`` (503, Retry-After).

Every request holds its adapter from ``acquire`` to ``release`` (``in_flight``), so an adapter
serving a request is never chosen for unloading by this process.

The record is this process's own and can be wrong in two ways, both repaired: the engine
lost the adapter (a restarted replica has nothing loaded; another gateway process unloaded
it) — the engine answers 404 and the forwarder calls ``forget`` and loads it again once, the
request having provably not started; and the readiness prober's ``/v1/models`` read of each
replica (adapters listed with a ``parent``) calls ``observed``, which drops what the replica
no longer lists and adopts, while there is room, what another process loaded there.

No I/O here but through the ``AdapterLoader`` given (``EngineLoader`` on the engines' pools).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import Protocol

import orjson

from inferenceops.engines.openai_compat import OpenAICompatClient
from inferenceops.errors import AdapterLoadFailed, AdapterSlotsBusy, InferenceOpsError
from inferenceops.platform import Adapter, Deployment, Replica
from inferenceops.routing.health import label_value
from inferenceops.routing.protocol import RouteFacts, Strategy

log = logging.getLogger("inferenceops.routing.adapters")

#: How long a load may take before the request fails (the engine reads the weights from disk).
LOAD_TIMEOUT_S = 60.0


class AdapterLoader(Protocol):
    """Loads and unloads adapters on an engine replica; failures are ``InferenceOpsError``s."""

    async def load(self, deployment: Deployment, replica: Replica, name: str, source: str) -> None: ...

    async def unload(self, deployment: Deployment, replica: Replica, name: str) -> None: ...


class EngineLoader:
    """vLLM's runtime LoRA endpoints, on the pools of the process's engine client.

    "Already loaded" (another gateway process loaded it) counts as loaded, and "not found" on
    unloading as unloaded: the engine is where we want it either way.
    """

    __slots__ = ("_client", "timeout_s")

    def __init__(self, client: OpenAICompatClient, timeout_s: float = LOAD_TIMEOUT_S) -> None:
        self._client = client
        self.timeout_s = timeout_s

    async def load(self, deployment: Deployment, replica: Replica, name: str, source: str) -> None:
        body = orjson.dumps({"lora_name": name, "lora_path": source})
        status, answer = await self._client.lora(deployment, replica, "load_lora_adapter", body,
                                                 self.timeout_s)
        if status == 200 or (status == 400 and b"already been loaded" in answer):
            return
        raise AdapterLoadFailed(
            f"The engine serving deployment {deployment.name!r} could not load adapter "
            f"{name!r} (HTTP {status}).", extra={"deployment": deployment.name},
            detail={"status": status, "message": answer[:500].decode("utf-8", "replace")})

    async def unload(self, deployment: Deployment, replica: Replica, name: str) -> None:
        body = orjson.dumps({"lora_name": name})
        status, answer = await self._client.lora(deployment, replica, "unload_lora_adapter", body,
                                                 self.timeout_s)
        if status not in (200, 404):
            raise AdapterLoadFailed(
                f"The engine serving deployment {deployment.name!r} could not unload adapter "
                f"{name!r} (HTTP {status}).", extra={"deployment": deployment.name},
                detail={"status": status, "message": answer[:500].decode("utf-8", "replace")})


@dataclass(slots=True)
class _Resident:
    in_flight: int = 0


class AdapterResidency:
    """This process's record of resident adapters per replica, and the loads in progress."""

    __slots__ = ("_loader", "load_timeout_s", "_replicas", "_loading", "loads", "unloads",
                 "failures")

    def __init__(self, loader: AdapterLoader, *, load_timeout_s: float = LOAD_TIMEOUT_S) -> None:
        self._loader = loader
        self.load_timeout_s = load_timeout_s
        #: replica id → adapter name → its in-flight count, least recently used first.
        self._replicas: dict[str, OrderedDict[str, _Resident]] = {}
        self._loading: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.loads: dict[str, int] = {}  # deployment → adapters loaded
        self.unloads: dict[str, int] = {}  # deployment → adapters unloaded for room
        self.failures: dict[str, int] = {}  # deployment → loads that failed

    # ---- what is where ------------------------------------------------------------------------

    def resident(self, replica_id: str) -> list[str]:
        """The adapters on ``replica_id``, least recently used first."""
        return list(self._replicas.get(replica_id, ()))

    def in_flight(self, replica_id: str, name: str) -> int:
        slots = self._replicas.get(replica_id)
        entry = slots.get(name) if slots is not None else None
        return 0 if entry is None else entry.in_flight

    def holders(self, name: str, replicas: Iterable[Replica]) -> list[Replica]:
        """Those of ``replicas`` where ``name`` is resident."""
        return [r for r in replicas if name in self._replicas.get(r.id, ())]

    # ---- one request --------------------------------------------------------------------------

    async def acquire(self, deployment: Deployment, replica: Replica, adapter: Adapter) -> bool:
        """Hold ``adapter`` on ``replica`` for one request, loading it first if need be; True
        when this call waited for a load. ``AdapterLoadFailed`` / ``AdapterSlotsBusy`` when it
        cannot be made resident; then nothing is held."""
        name = adapter.name
        waited = False
        while True:
            slots = self._replicas.setdefault(replica.id, OrderedDict())
            entry = slots.get(name)
            if entry is not None:
                entry.in_flight += 1
                slots.move_to_end(name)
                return waited
            task = self._loading.get((replica.id, name))
            if task is None:
                task = self._start_load(deployment, replica, adapter, slots)
            waited = True
            await asyncio.shield(task)  # raises the load's failure to every waiter

    def release(self, replica_id: str, name: str) -> None:
        """The request that ``acquire`` held it for is over."""
        slots = self._replicas.get(replica_id)
        entry = slots.get(name) if slots is not None else None
        if entry is not None and entry.in_flight > 0:
            entry.in_flight -= 1

    def forget(self, replica_id: str, name: str) -> None:
        """The engine says it does not hold ``name`` (restarted, or another process unloaded
        it): off the record, so the next ``acquire`` loads it again."""
        slots = self._replicas.get(replica_id)
        if slots is not None and slots.pop(name, None) is not None:
            log.info("adapter %s is no longer on replica %s; it will be loaded again", name,
                     replica_id)

    def observed(self, replica_id: str, listed: Collection[str], max_loras: int) -> None:
        """What the replica's ``/v1/models`` lists as adapters now: drop from the record what it
        does not list, adopt what it lists while there is room. An adapter being loaded or with
        requests in flight stays (the list may predate the load; a request on an adapter the
        engine lost fails with a 404, which ``forget``s it)."""
        slots = self._replicas.setdefault(replica_id, OrderedDict())
        for name in [n for n, e in slots.items() if n not in listed and e.in_flight == 0]:
            if (replica_id, name) not in self._loading:
                self.forget(replica_id, name)
        for name in listed:
            if name not in slots and len(slots) + self._loads_on(replica_id) < max_loras:
                slots[name] = _Resident()
                slots.move_to_end(name, last=False)  # unused here yet: first to go

    # ---- loading ------------------------------------------------------------------------------

    def _loads_on(self, replica_id: str) -> int:
        return sum(1 for rid, _ in self._loading if rid == replica_id)

    def _start_load(self, deployment: Deployment, replica: Replica, adapter: Adapter,
                    slots: OrderedDict[str, _Resident]) -> asyncio.Task[None]:
        """Reserve a slot now (no await between the check and the reservation) and start the
        load as its own task; the least recently used idle adapter leaves the record at once."""
        victim = None
        if len(slots) + self._loads_on(replica.id) >= deployment.max_loras:
            victim = next((n for n, e in slots.items() if e.in_flight == 0), None)
            if victim is None:
                raise AdapterSlotsBusy(
                    f"Adapter {adapter.name!r} cannot be loaded now: every LoRA slot of "
                    f"deployment {deployment.name!r} on the chosen replica serves requests; "
                    "retry shortly.", headers={"Retry-After": "1"},
                    extra={"deployment": deployment.name})
            del slots[victim]
        key = (replica.id, adapter.name)
        task = asyncio.ensure_future(self._load(deployment, replica, adapter, victim))
        self._loading[key] = task

        def done(finished: asyncio.Task[None]) -> None:
            self._loading.pop(key, None)
            if not finished.cancelled():
                finished.exception()  # retrieved here: a waiter that left must not warn

        task.add_done_callback(done)
        return task

    async def _load(self, deployment: Deployment, replica: Replica, adapter: Adapter,
                    victim: str | None) -> None:
        name = deployment.name
        if victim is not None:
            try:
                async with asyncio.timeout(self.load_timeout_s):
                    await self._loader.unload(deployment, replica, victim)
                self.unloads[name] = self.unloads.get(name, 0) + 1
            except (InferenceOpsError, TimeoutError) as exc:  # the load may still fit: go on
                log.warning("unloading adapter %s from replica %s failed: %s", victim,
                            replica.id, exc)
        try:
            async with asyncio.timeout(self.load_timeout_s):
                await self._loader.load(deployment, replica, adapter.name, adapter.source)
        except TimeoutError:
            self.failures[name] = self.failures.get(name, 0) + 1
            raise AdapterLoadFailed(
                f"The engine serving deployment {name!r} did not load adapter {adapter.name!r} "
                f"within {self.load_timeout_s:g}s.", extra={"deployment": name}) from None
        except InferenceOpsError as exc:
            self.failures[name] = self.failures.get(name, 0) + 1
            if isinstance(exc, AdapterLoadFailed):
                raise
            raise AdapterLoadFailed(
                f"The engine serving deployment {name!r} could not load adapter "
                f"{adapter.name!r}: {exc.message}", extra={"deployment": name}) from None
        self._replicas.setdefault(replica.id, OrderedDict())[adapter.name] = _Resident()
        self.loads[name] = self.loads.get(name, 0) + 1
        log.info("adapter %s loaded on replica %s", adapter.name, replica.id)

    def render_metrics(self) -> str:
        """Loads, unloads for room and failed loads per deployment, for ``/metrics``."""
        lines: list[str] = []
        for metric, counts, what in (
                ("inferenceops_adapter_loads_total", self.loads, "LoRA adapters loaded on replicas."),
                ("inferenceops_adapter_unloads_total", self.unloads,
                 "LoRA adapters unloaded to make room (least recently used, idle)."),
                ("inferenceops_adapter_load_failures_total", self.failures,
                 "LoRA adapter loads that failed or timed out.")):
            lines += [f"# HELP {metric} {what}", f"# TYPE {metric} counter"]
            lines += [f'{metric}{{deployment="{label_value(d)}"}} {n}'
                      for d, n in sorted(counts.items())]
        return "\n".join(lines) + "\n"


class AdapterAffinity:
    """A deployment's strategy, kept to the replicas holding the request's adapter when any
    may take it; otherwise the strategy's own choice among all (where ``acquire`` loads it)."""

    __slots__ = ("_inner", "_residency")

    def __init__(self, inner: Strategy, residency: AdapterResidency) -> None:
        self._inner = inner
        self._residency = residency

    def pick(self, deployment: Deployment, facts: RouteFacts, tried: Collection[str]) -> Replica:
        name = facts.adapter
        if name is not None:
            holding = [r for r in self._residency.holders(name, deployment.replicas)
                       if r.id not in tried]
            if holding:
                return self._inner.pick(replace(deployment, replicas=tuple(holding)), facts, tried)
        return self._inner.pick(deployment, facts, tried)

    def acquire(self, replica: Replica, facts: RouteFacts | None = None) -> None:
        self._inner.acquire(replica, facts)

    def release(self, replica: Replica, facts: RouteFacts | None = None) -> None:
        self._inner.release(replica, facts)
