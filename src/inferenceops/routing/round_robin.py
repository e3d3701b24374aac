"""Round robin: each request to the next replica in turn, whatever their load.

The simplest fair spread, for replicas that are truly alike and for tests that
want a predictable order; ``least_outstanding`` is the default because it also
steers around a replica that has slowed down.
"""

from __future__ import annotations

from collections.abc import Collection

from inferenceops.platform import Deployment, Replica
from inferenceops.routing.protocol import RouteFacts


class RoundRobin:
    __slots__ = ("_turn",)

    def __init__(self) -> None:
        self._turn: dict[str, int] = {}

    def pick(self, deployment: Deployment, facts: RouteFacts | None = None,
             tried: Collection[str] = ()) -> Replica:
        replicas = deployment.replicas
        n = len(replicas)
        turn = self._turn.get(deployment.name, 0)
        for i in range(n):
            replica = replicas[(turn + i) % n]
            if replica.id not in tried:
                self._turn[deployment.name] = turn + i + 1
                return replica
        self._turn[deployment.name] = turn + 1
        return replicas[turn % n]

    def acquire(self, replica: Replica, facts: RouteFacts | None = None) -> None:
        return None

    def release(self, replica: Replica, facts: RouteFacts | None = None) -> None:
        return None
