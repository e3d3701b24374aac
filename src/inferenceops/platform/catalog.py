"""What the platform serves: models, the deployments behind them, their replicas, adapters.

These are immutable values, gathered in a ``Catalog`` that is part of every
``Snapshot`` the data plane reads. Nothing here does I/O.
"""

from __future__ import annotations

import bisect
import enum
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import orjson


class Endpoint(enum.StrEnum):
    """OpenAI endpoints a model can be called on."""

    CHAT = "chat/completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-deployment upstream timeouts, in seconds."""

    connect_s: float = 5.0
    first_byte_s: float = 120.0
    between_chunks_s: float = 60.0
    total_s: float = 900.0


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """How requests wait when a deployment is at capacity (see ``admission.fair_queue``)."""

    max_waiting: int = 1000
    interactive_max_wait_s: float = 30.0
    background_max_wait_s: float = 600.0


@dataclass(frozen=True, slots=True)
class Replica:
    """One running engine instance; ``base_url`` ends at the API root (``…/v1``)."""

    id: str
    base_url: str


@dataclass(frozen=True, slots=True)
class Deployment:
    """A model served by one engine type on one or more replicas.

    ``api_key`` is the upstream credential, injected server-side and never echoed.
    """

    name: str
    dialect: str
    served_model: str
    replicas: tuple[Replica, ...]
    timeouts: Timeouts = Timeouts()
    api_key: str | None = field(default=None, repr=False)
    max_connections: int = 256
    #: Requests this gateway process sends at once; more wait in the fair queue. None = no cap.
    capacity: int | None = None
    queue: QueueSettings = QueueSettings()
    #: How a replica is picked for each request: a ``routing`` strategy's name.
    routing: str = "least_outstanding"
    #: The engines order their queue by the request's ``priority`` (vLLM's priority
    #: scheduling): the gateway writes each request's service class there.
    engine_priority: bool = False
    #: Ids of the replicas an operator drained: they take no new work (in-flight work ends).
    drained: frozenset[str] = frozenset()
    #: Whether readiness probes (GET /health, /v1/models) run against its replicas: self-hosted
    #: engines yes; an external provider (a deployment naming a ``provider``) no.
    probed: bool = True
    #: LoRA adapters the gateway keeps loaded on each replica at once (``routing.adapters``).
    max_loras: int = 1


@dataclass(frozen=True, slots=True)
class Split:
    """A model's traffic shared among deployments (a canary): cumulative shares in [0, 1].

    A request with a session key (``x-inferenceops-session``, else the body's ``user``) always
    lands on the same deployment — the key's CRC-32 is its point in [0, 1), the same in every
    gateway process — so a conversation does not flip between the canary and the stable
    deployment; one without a session draws a point at random.
    """

    deployments: tuple[Deployment, ...]
    bounds: tuple[float, ...]  # upper bound of each deployment's share; the last is 1.0

    def pick(self, session: str | None, draw: Callable[[], float]) -> Deployment:
        point = (zlib.crc32(session.encode("utf-8", "surrogatepass")) / 4294967296.0
                 if session else draw())
        index = bisect.bisect_right(self.bounds, point)
        return self.deployments[min(index, len(self.deployments) - 1)]


@dataclass(frozen=True, slots=True)
class Fallback:
    """Where a request goes when its model's deployment could not take it: another deployment
    of the same model (``model`` None), or another model (its own split, not its fallbacks)."""

    deployment: Deployment
    model: Model | None = None

    def target(self, session: str | None, draw: Callable[[], float]) -> Deployment:
        model = self.model
        if model is not None and model.split is not None:
            return model.split.pick(session, draw)
        return self.deployment


@dataclass(frozen=True, slots=True)
class Model:
    """A public model name (plus aliases) that teams call; routed to one deployment, or shared
    among several (``split``: a canary), with an ordered chain of ``fallbacks``."""

    name: str
    deployment: Deployment  # the primary: all traffic without a split, the rest with one
    endpoints: frozenset[Endpoint]
    aliases: tuple[str, ...] = ()
    owned_by: str = "inferenceops"
    created: int = 0
    #: Output tokens reserved for a request that does not set max_tokens.
    max_output_tokens: int = 4096
    split: Split | None = None
    fallbacks: tuple[Fallback, ...] = ()

    def pick(self, session: str | None, draw: Callable[[], float]) -> Deployment:
        """The deployment this request goes to first."""
        split = self.split
        return self.deployment if split is None else split.pick(session, draw)

    def card(self) -> dict[str, object]:
        return {"id": self.name, "object": "model", "created": self.created,
                "owned_by": self.owned_by}


@dataclass(frozen=True, slots=True)
class Adapter:
    """A LoRA adapter on a base model: requests naming it go to the model's primary deployment,
    to a replica where the gateway has it loaded (``routing.adapters``) under ``name`` — the
    name the engine knows it by too — from ``source`` (vLLM's ``lora_path``)."""

    name: str
    model: Model
    source: str
    created: int = 0

    def card(self) -> dict[str, object]:
        """As vLLM lists a LoRA: ``parent`` is the base model (``root`` too: the source path
        is the platform's business, not the caller's)."""
        return {"id": self.name, "object": "model", "created": self.created,
                "owned_by": self.model.owned_by, "root": self.model.name,
                "parent": self.model.name}


class Catalog:
    """Every served model by public name and alias, and every adapter, by dict access."""

    __slots__ = ("_by_name", "models", "deployments", "_cards_json", "adapters")

    def __init__(self, models: list[Model], adapters: list[Adapter] | tuple[Adapter, ...] = ()) -> None:
        by_name: dict[str, Model] = {}
        for model in models:
            for name in (model.name, *model.aliases):
                if name in by_name:
                    raise ValueError(f"model name or alias {name!r} is used twice")
                by_name[name] = model
        named: dict[str, Adapter] = {}
        for adapter in adapters:
            if adapter.name in by_name or adapter.name in named:
                raise ValueError(f"adapter name {adapter.name!r} is already used")
            named[adapter.name] = adapter
        #: Every adapter by name (names never clash with models' names and aliases).
        self.adapters: Mapping[str, Adapter] = MappingProxyType(named)
        self._by_name: Mapping[str, Model] = MappingProxyType(by_name)
        self.models: tuple[Model, ...] = tuple(models)
        served: dict[str, Deployment] = {}
        for m in models:
            served[m.deployment.name] = m.deployment
            for d in m.split.deployments if m.split is not None else ():
                served[d.name] = d
            for fallback in m.fallbacks:
                served[fallback.deployment.name] = fallback.deployment
        #: Every deployment a model may send requests to (primary, canary or fallback).
        self.deployments: Mapping[str, Deployment] = MappingProxyType(served)
        cards = {name: orjson.dumps(m.card()) for name, m in by_name.items()}
        cards.update((name, orjson.dumps(a.card())) for name, a in named.items())
        self._cards_json: Mapping[str, bytes] = MappingProxyType(cards)

    def model(self, name: str) -> Model | None:
        return self._by_name.get(name)

    def adapter(self, name: str) -> Adapter | None:
        return self.adapters.get(name)

    def model_card_json(self, name: str) -> bytes | None:
        return self._cards_json.get(name)
