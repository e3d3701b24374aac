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
"""

from __future__ import annotations

import random
from collections.abc import Collection

from inferenceops.platform import Deployment, Replica
from inferenceops.routing.engine_board import EngineBoard
from inferenceops.routing.protocol import RouteFacts


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
        load = self.board.load
        return b if load(b.id) < load(a.id) else a

    def acquire(self, replica: Replica) -> None:
        self.board.acquire(replica.id)

    def release(self, replica: Replica) -> None:
        self.board.release(replica.id)
