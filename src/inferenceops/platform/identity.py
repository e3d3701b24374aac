"""Who is calling and what they may use: principals, API keys, teams, grants. Pure data.

An ``Identity`` is the immutable, in-memory index the data plane authenticates
and authorizes from: keys by their keyed digest, grants by team. It is built
off the hot path (from the store) and swapped whole; nothing here does I/O.

``key_power`` is the one rule for what a key may do *now*, used by the data
plane's snapshot and by the admin API alike (``docs/security.md``): a key
speaks for its owner **in its team only** — its scopes intersected with what
the owner's current role there allows. Only a key without a team carries its
owner's platform role, and only a platform admin can create one, for
themselves. A membership removed, a role lowered or an owner disabled takes
the power away from every key at once, with no key to revoke.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

PLATFORM_ADMIN = "platform-admin"
PLATFORM_ROLES = (PLATFORM_ADMIN, "auditor", "billing")
TEAM_ROLES = ("owner", "member", "viewer")
SCOPE_INFERENCE = "inference"
SCOPE_BATCH = "batch"
SCOPE_ADMIN = "admin"
ALL_SCOPES = frozenset({SCOPE_INFERENCE, SCOPE_BATCH, SCOPE_ADMIN})
#: The team role a service account's keys act with on the admin side.
SERVICE_ACCOUNT_ROLE = "member"

#: Which key scopes each role can use. A viewer is read-only: it may read the team through the
#: admin API but not spend the team's capacity or budget. Auditors and billing read only.
_TEAM_ROLE_SCOPES: Mapping[str, frozenset[str]] = MappingProxyType({
    "owner": ALL_SCOPES, "member": ALL_SCOPES, "viewer": frozenset({SCOPE_ADMIN})})
_PLATFORM_ROLE_SCOPES: Mapping[str, frozenset[str]] = MappingProxyType({
    PLATFORM_ADMIN: ALL_SCOPES, "auditor": frozenset({SCOPE_ADMIN}),
    "billing": frozenset({SCOPE_ADMIN})})


@dataclass(frozen=True, slots=True)
class KeyPower:
    """What a key may do now: its usable scopes and the one role it acts with.

    ``platform_role`` is set only for a key without a team; ``team_role`` only for
    a key with one (its owner's current role there, or ``SERVICE_ACCOUNT_ROLE``).
    """

    scopes: frozenset[str]
    platform_role: str | None = None
    team_role: str | None = None


def key_power(scopes: frozenset[str], team_id: str | None, *, service_account: bool,
              owner_enabled: bool = True, platform_role: str | None = None,
              team_role: str | None = None) -> KeyPower | None:
    """The key's power given its owner's *current* standing; None: it can do nothing now.

    ``platform_role`` is the owning user's platform role and ``team_role`` their
    membership role in the key's team (None: not a member). A service account's
    key acts as ``SERVICE_ACCOUNT_ROLE`` in its account's team.
    """
    if service_account:
        role: str | None = SERVICE_ACCOUNT_ROLE if team_id is not None else None
        allowed = ALL_SCOPES if role is not None else frozenset()
        return KeyPower(scopes & allowed, team_role=role) if scopes & allowed else None
    if not owner_enabled:
        return None
    if team_id is None:  # a platform key: its owner's platform role, and nothing of any team
        allowed = _PLATFORM_ROLE_SCOPES.get(platform_role or "", frozenset())
        return KeyPower(scopes & allowed, platform_role=platform_role) if scopes & allowed else None
    allowed = _TEAM_ROLE_SCOPES.get(team_role or "", frozenset())
    return KeyPower(scopes & allowed, team_role=team_role) if scopes & allowed else None


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
    """A live key: who it speaks for, for which team, with which scopes and models.

    Built from ``key_power``: ``scopes`` are the ones usable now, and
    ``principal.platform_role`` is set only for a key without a team.
    """

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

    def keys(self) -> Iterable[ApiKey]:
        """Every key (for start-up work such as rebuilding counters; never on the hot path)."""
        return self._keys.values()

    def may_use(self, key: ApiKey, model: str) -> bool:
        """Platform admins use every model; others what their team is granted (and key allows)."""
        if key.allowed_models is not None and model not in key.allowed_models:
            return False
        if key.principal.is_platform_admin:
            return True
        return key.team_id is not None and model in self._grants.get(key.team_id, ())
