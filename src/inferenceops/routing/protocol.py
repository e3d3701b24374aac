"""The routing seam: ``pick(deployment, facts, tried)``, and what a strategy may know.

A strategy chooses the replica of a deployment for one request. It sees the
request through ``RouteFacts`` — the few things routing may care about, each
cheap or computed only when a strategy asks (the prompt's prefix hash) — and
the replicas already ``tried`` for this request (a refused connection moves
on). ``acquire``/``release`` bracket each attempt, so a strategy can count what
it has in flight. Strategies are chosen per deployment (``Deployment.routing``,
set in the platform file) by the ``Router``; they do no I/O on the hot path
(engine-aware strategies read state that background scrapers keep fresh).
"""

from __future__ import annotations

import zlib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from inferenceops.platform import Deployment, Replica
from inferenceops.platform.priority import Priority

#: How much of the prompt names its prefix (engines' prefix caches work in blocks of 16 tokens;
#: ~1 KiB covers a system prompt's worth of them).
PREFIX_BYTES = 1024


@dataclass(slots=True)
class RouteFacts:
    """What a routing strategy may know of one request."""

    priority: Priority = Priority.INTERACTIVE
    estimated_tokens: int = 0
    adapter: str | None = None  # the LoRA adapter the request names (``routing.adapters``)
    session: str | None = None  # a caller-chosen affinity key (the ``user`` field, today)
    doc: dict[str, Any] | None = field(default=None, repr=False)  # the parsed body, for prefix_hash
    _prefix: int | None = field(default=None, repr=False)

    @property
    def prefix_hash(self) -> int | None:
        """A hash of the prompt's beginning (the same system prompt → the same hash), or None."""
        if self._prefix is None and self.doc is not None:
            self._prefix = _prefix_hash(self.doc)
        return self._prefix


def _prefix_hash(doc: dict[str, Any]) -> int | None:
    messages = doc.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        size = 0
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
                size += len(content)
                if size >= PREFIX_BYTES:
                    break
        text = "\x1e".join(parts)
    else:
        prompt = doc.get("prompt")
        text = prompt if isinstance(prompt, str) else ""
    if not text:
        return None
    return zlib.crc32(text[:PREFIX_BYTES].encode("utf-8", "surrogatepass"))


def urgent(facts: RouteFacts | None) -> bool:
    """Whether a request is interactive: on engines that order their queue by priority
    (``Deployment.engine_priority``) it waits only behind other interactive requests."""
    return facts is not None and facts.priority is Priority.INTERACTIVE


class Strategy(Protocol):
    """Chooses a replica; never one in ``tried`` unless every replica has been tried.
    ``acquire``/``release`` bracket the request sent there (``facts``: whose, for strategies
    that count requests by class)."""

    def pick(self, deployment: Deployment, facts: RouteFacts, tried: Collection[str]) -> Replica: ...

    def acquire(self, replica: Replica, facts: RouteFacts | None = None) -> None: ...

    def release(self, replica: Replica, facts: RouteFacts | None = None) -> None: ...


class Router:
    """The strategy each deployment asked for (by name), one instance per name per process."""

    __slots__ = ("_strategies", "_default")

    def __init__(self, strategies: dict[str, Strategy], default: str) -> None:
        if default not in strategies:
            raise ValueError(f"the default routing strategy {default!r} is not among "
                             f"{sorted(strategies)}")
        self._strategies = strategies
        self._default = strategies[default]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._strategies)

    def strategy(self, deployment: Deployment) -> Strategy:
        return self._strategies.get(deployment.routing, self._default)
