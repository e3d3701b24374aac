"""The one immutable view the data plane reads per request: catalog + identity + policy.

Built off the hot path and swapped whole (one attribute assignment), so a
request that picked up a snapshot sees one consistent world from start to end.
"""

from __future__ import annotations

import orjson

from inferenceops.platform.catalog import Adapter, Catalog, Model
from inferenceops.platform.identity import ApiKey, Identity
from inferenceops.platform.policy import EMPTY_POLICY, Policy


class Snapshot:
    __slots__ = ("catalog", "identity", "policy", "_model_lists")

    def __init__(self, catalog: Catalog, identity: Identity, policy: Policy = EMPTY_POLICY) -> None:
        self.catalog = catalog
        self.identity = identity
        self.policy = policy
        # /v1/models bodies by what decides them; filled on first use (benign race: same bytes).
        self._model_lists: dict[tuple[object, ...], bytes] = {}

    def visible_model(self, key: ApiKey, name: str) -> Model | None:
        """The model ``name`` (or alias) if this key may use it; else None, as if it did not exist."""
        model = self.catalog.model(name)
        if model is None or not self.identity.may_use(key, model.name):
            return None
        return model

    def visible_adapter(self, key: ApiKey, name: str) -> Adapter | None:
        """The adapter ``name`` if this key may use it (its name is granted like a model's);
        else None, as if it did not exist. The base model needs no grant of its own."""
        adapter = self.catalog.adapter(name)
        if adapter is None or not self.identity.may_use(key, adapter.name):
            return None
        return adapter

    def visible(self, key: ApiKey, name: str) -> tuple[Model, Adapter | None] | None:
        """The model a request naming ``name`` runs on, and the adapter when ``name`` is one."""
        model = self.visible_model(key, name)
        if model is not None:
            return model, None
        adapter = self.visible_adapter(key, name)
        return None if adapter is None else (adapter.model, adapter)

    def models_json(self, key: ApiKey) -> bytes:
        cache_key = (key.team_id, key.allowed_models, key.principal.is_platform_admin)
        body = self._model_lists.get(cache_key)
        if body is None:
            cards = [m.card() for m in self.catalog.models if self.identity.may_use(key, m.name)]
            cards += [a.card() for a in self.catalog.adapters.values()
                      if self.identity.may_use(key, a.name)]
            body = orjson.dumps({"object": "list", "data": cards})
            if len(self._model_lists) < 10_000:
                self._model_lists[cache_key] = body
        return body
