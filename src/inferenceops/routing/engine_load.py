"""Engine load: power of two choices on what each replica's engine says it is doing.

Two replicas not yet tried are drawn at random; the one with the lower load
(``EngineBoard.load``: the engine's running + queued requests and KV-cache use
from its last ``/metrics`` scrape, plus what this process sent it since; or,
when that scrape is stale, this process's own in-flight count) gets the
request. Two random choices instead of the global minimum: every gateway
process reads the same scrape, so "the least loaded" would send every
process's burst to the same replica until the next scrape (herding); two
choices keep nearly all of the benefit (Mitzenmacher, "The Power of Two
Choices in Randomized Load Balancing") without it. No I/O: the scraper service
keeps the board fresh.

**By class on engines that order their queue** (``Deployment.engine_priority``): an
interactive request there starts before every batch line, so what it waits for is the
other interactive requests on the replica — their prefills —, not the batch's sequences,
which only lengthen every step alike. So it goes to the replica with fewer interactive
requests of this process in flight, the load deciding between equals. Compared on the
whole load, the replica a batch happened to leave a few sequences lighter drew every
interactive request of a burst, and their prefills queued there one behind the other.
"""

from __future__ import annotations

import random
from collections.abc import Collection

from inferenceops.platform import Deployment, Replica
from inferenceops.routing.engine_board import EngineBoard
from inferenceops.routing.protocol import RouteFacts, urgent


class EngineLoadStrategy:
    __slots__ = ("board", "_random")

    def __init__(self, board: EngineBoard, *, rng: random.Random | None = None) -> None:
        self.board = board
        self._random = rng or random.Random()

    def pick(self, deployment: Deployment, facts: RouteFacts | None = None,
             tried: Collection[str] = ()) -> Replica:
        replicas = deployment.replicas
        if len(replicas) == 1:
            return replicas[0]
        choices = [r for r in replicas if r.id not in tried] if tried else list(replicas)
        if not choices:  # every replica was tried: any of them again
            choices = list(replicas)
        if len(choices) == 1:
            return choices[0]
        a, b = self._random.sample(choices, 2)
        board = self.board
        if deployment.engine_priority and urgent(facts):
            ahead_a, ahead_b = board.urgent_in_flight(a.id), board.urgent_in_flight(b.id)
            if ahead_a != ahead_b:
                return b if ahead_b < ahead_a else a
        return b if board.load(b.id) < board.load(a.id) else a

    def acquire(self, replica: Replica, facts: RouteFacts | None = None) -> None:
        self.board.acquire(replica.id, urgent=urgent(facts))

    def release(self, replica: Replica, facts: RouteFacts | None = None) -> None:
        self.board.release(replica.id, urgent=urgent(facts))
