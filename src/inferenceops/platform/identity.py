"""Who is calling and what they may use: principals, API keys, teams, grants. Pure data.

An ``Identity`` is the immutable, in-memory index the data plane authenticates
and authorizes from: keys by their keyed digest, grants by team. It is built
off the hot path (from the store) and swapped whole; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

PLATFORM_ADMIN = "platform-admin"
SCOPE_INFERENCE = "inference"
SCOPE_ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """A user or a service account, as far as the data plane needs to know it."""

    id: str
    kind: str = "user"  # "user" | "service_account"
    platform_role: str | None = None

    @property
    def is_platform_admin(self) -> bool:
        return self.platform_role == PLATFORM_ADMIN


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A live key: who it speaks for, for which team, with which scopes and models."""

    id: str
    prefix: str
    principal: Principal
    team_id: str | None
    scopes: frozenset[str]
    allowed_models: frozenset[str] | None = None  # None: every model the team may use
    expires_at: float | None = None  # epoch seconds
    background_only: bool = False  # its requests always queue as background work
    #: Whose per-key counters it uses: its rotation lineage (rotating never resets use). "" = own id.
    meter_id: str = ""

    @property
    def meter(self) -> str:
        return self.meter_id or self.id

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class Identity:
    """Keys by digest and each team's granted models; immutable once built."""

    __slots__ = ("_index", "_keys", "_grants", "revision")

    def __init__(self, keys: Iterable[tuple[bytes, ApiKey]] | dict[bytes, ApiKey],
                 grants: Mapping[str, Iterable[str]], revision: int = 0) -> None:
        # A dict is taken as is (the builder fills it chunk by chunk); nothing else holds it.
        self._index = keys if isinstance(keys, dict) else dict(keys)
        self._keys: Mapping[bytes, ApiKey] = MappingProxyType(self._index)
        self._grants: Mapping[str, frozenset[str]] = MappingProxyType(
            {team: frozenset(models) for team, models in grants.items()})
        self.revision = revision

    def retire(self, count: int) -> int:
        """Forget up to ``count`` keys; returns how many remain.

        For a replaced snapshot: freeing 100,000 keys at once holds the event loop
        for tens of ms, so the owner retires them in slices between loop turns.
        Only call once no new request can pick this identity up.
        """
        index = self._index
        for _ in range(min(count, len(index))):
            index.popitem()
        return len(index)

    def key(self, digest: bytes) -> ApiKey | None:
        return self._keys.get(digest)

    def __len__(self) -> int:
        return len(self._keys)

    def may_use(self, key: ApiKey, model: str) -> bool:
        """Platform admins use every model; others what their team is granted (and key allows)."""
        if key.allowed_models is not None and model not in key.allowed_models:
            return False
        if key.principal.is_platform_admin:
            return True
        return key.team_id is not None and model in self._grants.get(key.team_id, ())
