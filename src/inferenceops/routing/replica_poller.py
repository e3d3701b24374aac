"""What the readiness prober and the engine-metrics scraper share: a supervised service that,
every ``interval_s``, asks each replica of the catalog the process serves now for something,
all at once, each within ``timeout_s``, over its own one-connection pool.

A subclass says which replicas it polls and what it keeps per replica (``target``: built
again only when ``target_key`` changes, so a warm connection survives catalog swaps that
leave the replica alone), and does one round (``poll_once``) with ``ask_all``. Pools of
replicas that left or changed are closed at the next round; all are closed at stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, Protocol, TypeVar

from inferenceops.engines.http1 import Pool
from inferenceops.platform import Deployment, Replica


class Target(Protocol):
    pool: Pool


T = TypeVar("T", bound=Target)
R = TypeVar("R")


class ReplicaPoller(Generic[T]):
    """The loop, the targets and the concurrency of a per-replica poller (see the module doc)."""

    def __init__(self, deployments: Callable[[], Iterable[Deployment]], *, interval_s: float,
                 timeout_s: float, name: str, what: str) -> None:
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError(f"the {what} interval and timeout must be positive")
        self._deployments = deployments
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._name = name
        self._targets: dict[str, T] = {}
        self._keys: dict[str, Hashable] = {}
        self.rounds = 0

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        return None  # nothing to open before serving: the first round runs in the background

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await self.poll_once()
            await asyncio.sleep(max(0.0, self.interval_s - (loop.time() - began)))

    async def stop(self) -> None:
        for target in self._targets.values():
            target.pool.close()
        self._targets, self._keys = {}, {}

    async def poll_once(self) -> object:
        raise NotImplementedError

    # ---- for subclasses ---------------------------------------------------------------------

    def polled(self, deployment: Deployment) -> bool:
        """Whether this poller asks ``deployment``'s replicas."""
        raise NotImplementedError

    def target_key(self, deployment: Deployment, replica: Replica) -> Hashable:
        """What a target depends on: a new one is built when it changes."""
        raise NotImplementedError

    def target(self, deployment: Deployment, replica: Replica) -> T:
        raise NotImplementedError

    def sync_targets(self) -> tuple[dict[str, T], set[str]]:
        """The targets to poll now (keeping unchanged ones), and every replica id in the catalog."""
        targets: dict[str, T] = {}
        keys: dict[str, Hashable] = {}
        every: set[str] = set()
        for deployment in self._deployments():
            for replica in deployment.replicas:
                every.add(replica.id)
                if not self.polled(deployment):
                    continue
                key = self.target_key(deployment, replica)
                target = self._targets.get(replica.id)
                if target is None or self._keys.get(replica.id) != key:
                    target = self.target(deployment, replica)
                targets[replica.id], keys[replica.id] = target, key
        for replica_id, target in self._targets.items():
            if targets.get(replica_id) is not target:
                target.pool.close()
        self._targets, self._keys = targets, keys
        return targets, every

    async def ask_all(self, targets: dict[str, T],
                      ask: Callable[[T], Awaitable[R]]) -> dict[str, R | Exception]:
        """``ask`` every target at once; replica id → its answer or the exception it raised.
        A cancellation (the service stopping) is raised, not returned."""
        self.rounds += 1
        ids = list(targets)
        results = await asyncio.gather(*(ask(targets[i]) for i in ids), return_exceptions=True)
        out: dict[str, R | Exception] = {}
        for replica_id, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
            out[replica_id] = result
        return out
