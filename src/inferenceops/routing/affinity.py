"""Affinity routing: the same key to the same replica, on a consistent-hash ring with bounded load.

``prefix_affinity`` keys a request by the hash of its prompt's beginning
(``RouteFacts.prefix_hash``: the same system prompt → the same key), so every
request sharing a prefix lands where the engine's prefix cache already holds
its KV blocks. ``session_affinity`` keys it by ``RouteFacts.session`` (a
conversation's turns share their history, hence their prefix, too).

**The ring.** Each replica owns ``VNODES`` points on a 64-bit ring, placed by
BLAKE2b of ``"<replica id>#<i>"``; a key's owner is the first point clockwise
from the key's position. Adding or removing one replica moves only the keys
it owned. The placement depends on nothing but the replica ids and the key,
so every gateway process maps a prefix to the same replica without talking to
the others.

**Bounded load** (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with
Bounded Loads", 2018). With ``m`` requests in flight on the deployment's ``n``
replicas, a replica may take this one only while it has fewer than
``ceil((1 + epsilon) · (m + 1) / n)``; otherwise the key passes to the next
replica clockwise. One hot prefix therefore fills its own replica up to the
bound and spills to its ring neighbours, in the same order in every process —
it cannot overload one replica, and no replica ends above
``ceil((1 + epsilon) · mean)`` of this process's in-flight requests. The load
counted is this process's own in-flight requests (``EngineBoard.in_flight``):
exact and immediate, and with several gateway processes each bounds its share,
which bounds the sum. A request without a key goes to the replica with the
fewest in flight. Never a replica in ``tried`` unless every one was tried.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from bisect import bisect_left
from collections.abc import Callable, Collection

from inferenceops.platform import Deployment, Replica
from inferenceops.routing.engine_board import EngineBoard
from inferenceops.routing.protocol import RouteFacts, urgent

#: Points per replica on the ring: enough that four replicas own shares within ~10% of a quarter.
VNODES = 160
#: How far above the mean a replica's in-flight count may go before its keys spill over.
DEFAULT_EPSILON = 0.25
_MASK = (1 << 64) - 1


def _point(label: str) -> int:
    return int.from_bytes(hashlib.blake2b(label.encode("utf-8"), digest_size=8).digest(), "big")


def mix(key: int) -> int:
    """A key's position on the ring: splitmix64 of it (spreads CRC32's 32 bits over 64)."""
    z = (key + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


class Ring:
    """The consistent-hash ring of one deployment's replicas (immutable)."""

    __slots__ = ("replicas", "_points", "_owners")

    def __init__(self, replicas: tuple[Replica, ...], vnodes: int = VNODES) -> None:
        self.replicas = replicas
        placed = sorted((_point(f"{replica.id}#{i}"), index)
                        for index, replica in enumerate(replicas) for i in range(vnodes))
        self._points = [p for p, _ in placed]
        self._owners = [index for _, index in placed]

    def walk(self, key: int) -> list[Replica]:
        """Every replica once, in ring order clockwise from ``key``'s position (owner first)."""
        n = len(self.replicas)
        start = bisect_left(self._points, mix(key))
        order: list[Replica] = []
        seen: set[int] = set()
        owners = self._owners
        size = len(owners)
        for step in range(size):
            index = owners[(start + step) % size]
            if index not in seen:
                seen.add(index)
                order.append(self.replicas[index])
                if len(order) == n:
                    break
        return order


def bound(total_in_flight: int, replicas: int, epsilon: float) -> int:
    """The most in-flight requests a replica may hold after taking one more request."""
    # The tolerance keeps float noise (1.25 · 8 / 4 = 2.5000000001) from raising the bound by one.
    return math.ceil((1.0 + epsilon) * (total_in_flight + 1) / replicas - 1e-9)


class BoundedLoadAffinity:
    """Key → replica on the ring, passing over replicas at the load bound (see module doc)."""

    __slots__ = ("board", "epsilon", "_key_of", "_rings", "_turn")

    def __init__(self, board: EngineBoard, key_of: Callable[[RouteFacts], int | None], *,
                 epsilon: float = DEFAULT_EPSILON) -> None:
        if epsilon <= 0:
            raise ValueError("epsilon must be positive (0 would forbid any imbalance at all)")
        self.board = board
        self.epsilon = epsilon
        self._key_of = key_of
        self._rings: dict[str, Ring] = {}
        self._turn = 0

    def ring(self, deployment: Deployment) -> Ring:
        ring = self._rings.get(deployment.name)
        if ring is None or ring.replicas != deployment.replicas:
            ring = self._rings[deployment.name] = Ring(deployment.replicas)
        return ring

    def pick(self, deployment: Deployment, facts: RouteFacts | None = None,
             tried: Collection[str] = ()) -> Replica:
        replicas = deployment.replicas
        if len(replicas) == 1:
            return replicas[0]
        key = self._key_of(facts) if facts is not None else None
        if key is None:
            return self._least(replicas, tried)
        in_flight = self.board.in_flight
        cap = bound(sum(in_flight(r.id) for r in replicas), len(replicas), self.epsilon)
        for replica in self.ring(deployment).walk(key):
            if replica.id not in tried and in_flight(replica.id) < cap:
                return replica
        return self._least(replicas, tried)  # the untried ones are all at the bound

    def _least(self, replicas: tuple[Replica, ...], tried: Collection[str]) -> Replica:
        """The untried replica with the fewest in flight (ties rotate); any if all were tried."""
        self._turn += 1
        n = len(replicas)
        in_flight = self.board.in_flight
        best: Replica | None = None
        best_load = 0
        for i in range(n):
            replica = replicas[(self._turn + i) % n]
            if replica.id in tried:
                continue
            load = in_flight(replica.id)
            if best is None or load < best_load:
                best, best_load = replica, load
        return best if best is not None else replicas[self._turn % n]

    def acquire(self, replica: Replica, facts: RouteFacts | None = None) -> None:
        self.board.acquire(replica.id, urgent=urgent(facts))

    def release(self, replica: Replica, facts: RouteFacts | None = None) -> None:
        self.board.release(replica.id, urgent=urgent(facts))


def prefix_key(facts: RouteFacts) -> int | None:
    return facts.prefix_hash


def session_key(facts: RouteFacts) -> int | None:
    session = facts.session
    return None if session is None else zlib.crc32(session.encode("utf-8", "surrogatepass"))


def prefix_affinity(board: EngineBoard, epsilon: float = DEFAULT_EPSILON) -> BoundedLoadAffinity:
    """Requests sharing a prompt prefix → the same replica (its prefix cache holds them)."""
    return BoundedLoadAffinity(board, prefix_key, epsilon=epsilon)


def session_affinity(board: EngineBoard, epsilon: float = DEFAULT_EPSILON) -> BoundedLoadAffinity:
    """Requests of one session (``RouteFacts.session``) → the same replica."""
    return BoundedLoadAffinity(board, session_key, epsilon=epsilon)
