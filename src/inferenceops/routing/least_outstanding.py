"""Least outstanding requests (the default strategy): the replica with fewest in flight.

Counts only this process's in-flight requests: cheap, no I/O, and good enough
until engine-aware strategies (load, KV and prefix-cache affinity from engine
metrics) join it behind the same protocol. Ties rotate. ``pick`` never returns
a replica in ``tried`` unless every replica was tried, so a retry after a
refused connection moves on.
"""

from __future__ import annotations

from collections.abc import Collection

from inferenceops.platform import Deployment, Replica
from inferenceops.routing.protocol import RouteFacts


class LeastOutstanding:
    __slots__ = ("_inflight", "_turn")

    def __init__(self) -> None:
        self._inflight: dict[str, int] = {}
        self._turn = 0

    def pick(self, deployment: Deployment, facts: RouteFacts | None = None,
             tried: Collection[str] = ()) -> Replica:
        replicas = deployment.replicas
        if len(replicas) == 1:
            return replicas[0]
        self._turn += 1
        n = len(replicas)
        best: Replica | None = None
        best_load = 0
        for i in range(n):
            replica = replicas[(self._turn + i) % n]
            if replica.id in tried:
                continue
            load = self._inflight.get(replica.id, 0)
            if best is None or load < best_load:
                best, best_load = replica, load
        return best if best is not None else replicas[self._turn % n]

    def acquire(self, replica: Replica, facts: RouteFacts | None = None) -> None:
        self._inflight[replica.id] = self._inflight.get(replica.id, 0) + 1

    def release(self, replica: Replica, facts: RouteFacts | None = None) -> None:
        self._inflight[replica.id] -= 1

    def in_flight(self, replica_id: str) -> int:
        return self._inflight.get(replica_id, 0)
