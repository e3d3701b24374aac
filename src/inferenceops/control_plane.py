"""The serving process's link to the store: preparing it, and keeping the snapshot fresh.

``prepare_store`` runs once in the CLI's main process before any worker
starts: migrations (under the store's cross-process lock), then first-start
bootstrap — a platform-admin user and key (printed once), and for the
embedded default a ``demo`` team granted the demo models — then the catalog:
``--config FILE`` is applied to the store (``inferenceops.apply``) on every
start; without one, an empty store gets the embedded default's catalog and a
non-empty one is served as it is.

``SnapshotFeed`` runs in every worker: it builds the snapshot (the catalog
from the store, identity, admission policy) at start-up, then rebuilds and
swaps it whenever the store's revision counter moves. It hears of a change at
once — PostgreSQL ``LISTEN`` (every replica), or ``Database.on_change`` for
changes this process made (SQLite's single process) — and also polls the
counter (one single-row read) every ``refresh_s``, the safety net for a lost
listener and for other processes on SQLite. So a revoked key is refused by
every replica within well under ``refresh_s`` plus build time. The hot path
only ever sees the swapped snapshot. It is one of the process's supervised
services: ``start`` builds the first snapshot (before the process is ready),
``run`` keeps it fresh, ``stop`` closes its connections. What the data plane
queues for the store (usage, keys' last use, alerts) is the outbox writer's.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.admission.config import StaticPolicy
from inferenceops.apply import ApplyPlan, apply_platform
from inferenceops.catalog_source import platform_from_store
from inferenceops.config import Platform
from inferenceops.platform import Catalog, KeyHasher, Snapshot
from inferenceops.platform.identity import PLATFORM_ADMIN
from inferenceops.platform.keys import new_secret, visible_prefix
from inferenceops.platform.policy import (
    Budget,
    BudgetRule,
    LimitRule,
    Period,
    Policy,
    Price,
    RateLimit,
    Scope,
)
from inferenceops.store import Conflict, Database, repo, upgrade
from inferenceops.store.credentials import CredentialCipher
from inferenceops.store.migrate import migration_lock
from inferenceops.store.notify import RevisionListener
from inferenceops.store.records import IdentityData
from inferenceops.store.snapshot_builder import build_identity_and_rules, current_revision

if TYPE_CHECKING:
    from inferenceops.gateway.state import GatewayState

log = logging.getLogger("inferenceops.control")

BOOTSTRAP_EMAIL = "admin@inferenceops.local"
BOOTSTRAP_ACTOR = "system:bootstrap"
DEMO_TEAM = "demo"
ALL_SCOPES = ("inference", "batch", "admin")
_RETIRE_SLICE = 2000
LISTEN_RETRY_S = 10.0


@dataclass(frozen=True)
class Prepared:
    revision: str
    new_admin_key: str | None  # set only on the start that created it
    applied: ApplyPlan | None  # what applying the platform file changed
    models: tuple[str, ...]  # what the store serves now


async def prepare_store(url: str, hasher: KeyHasher, platform: Platform, *,
                        admin_key: str | None, from_file: bool) -> Prepared:
    """Migrate, bootstrap, and put ``platform``'s catalog in the store (see the module doc)."""
    head = await upgrade(url)
    db = Database(url)
    try:
        # The migration lock also serialises first-start bootstrap across replicas.
        async with migration_lock(url):
            created = await _bootstrap(db, hasher, platform.catalog, admin_key,
                                       seed_demo=not from_file)
            applied = await _apply_catalog(db, platform, from_file)
        if admin_key is not None and created is None:
            await _ensure_key(db, hasher, admin_key)
        async with db.read("listing the served models") as tx:
            models = tuple(m.name for m in (await repo.load_catalog(tx)).models)
    finally:
        await db.close()
    return Prepared(head, None if admin_key is not None else created, applied, models)


async def _bootstrap(db: Database, hasher: KeyHasher, catalog: Catalog, admin_key: str | None, *,
                     seed_demo: bool) -> str | None:
    """On an empty store: the platform admin and its key (returned), and the demo team.

    Audited like any other change, by ``system:bootstrap``, in the same transaction.
    """
    async with db.transaction("bootstrapping the store") as tx:
        if not await repo.is_empty(tx):
            return None
        admin = await repo.create_user(tx, BOOTSTRAP_EMAIL, display_name="Bootstrap admin",
                                       platform_role=PLATFORM_ADMIN)
        await _audit(tx, "user.create", "user", admin.id, admin)
        created = admin_key or new_secret()
        await _bootstrap_key(tx, hasher, created, admin.id, "bootstrap")
        if seed_demo:
            team = await repo.create_team(tx, DEMO_TEAM)
            await _audit(tx, "team.create", "team", team.id, team)
            for model in catalog.models:
                await repo.grant(tx, team.id, model.name)
                await _audit(tx, "grant.put", "grant", f"{team.id}/{model.name}",
                             {"team_id": team.id, "model": model.name})
    return created


async def _audit(tx: AsyncSession, action: str, target_type: str, target_id: str,
                 after: Any) -> None:
    await repo.append_audit(tx, actor=BOOTSTRAP_ACTOR, action=action, target_type=target_type,
                            target_id=target_id, after=after, source="inferenceops serve")


async def _bootstrap_key(tx: AsyncSession, hasher: KeyHasher, secret: str, admin_id: str,
                         name: str) -> None:
    """The bootstrap admin's platform key (no team: it carries the platform-admin role)."""
    key = await repo.create_api_key(tx, name=name, prefix=visible_prefix(secret),
                                    digest=hasher.digest(secret), user_id=admin_id,
                                    scopes=ALL_SCOPES, created_by=BOOTSTRAP_ACTOR)
    await _audit(tx, "key.create", "api_key", key.id, {  # never the digest
        "id": key.id, "name": key.name, "prefix": key.prefix, "user_id": key.user_id,
        "team_id": key.team_id, "scopes": sorted(key.scopes), "created_by": key.created_by})


async def _apply_catalog(db: Database, platform: Platform, from_file: bool) -> ApplyPlan | None:
    assert platform.spec is not None
    if not from_file:
        async with db.read("reading the catalog") as tx:
            current = await repo.load_catalog(tx)
        if current.providers or current.deployments or current.models:
            return None  # no file: serve what the store has; only an empty one gets the demo
    return await apply_platform(db, platform.spec, actor="system:config",
                                source=platform.source if from_file else "embedded default")


async def _ensure_key(db: Database, hasher: KeyHasher, secret: str) -> None:
    """``INFERENCEOPS_ADMIN_KEY`` always works: add it to the bootstrap admin if it is new."""
    try:
        async with db.transaction("registering INFERENCEOPS_ADMIN_KEY") as tx:
            admin = await repo.get_user_by_email(tx, BOOTSTRAP_EMAIL)
            await _bootstrap_key(tx, hasher, secret, admin.id, "bootstrap (environment)")
    except Conflict:
        pass  # already stored (same digest)


def assemble_policy(static: StaticPolicy, prices: dict[str, Price] | None,
                    data: IdentityData) -> Policy:
    """The platform YAML's rules and the store's, teams resolved by name (see ``Policy``)."""
    team_ids = {t.name: t.id for t in data.teams}
    weights = {t.id: t.weight for t in data.teams}
    weights.update(static.team_weights(team_ids))
    # The casts are sound: each table's ``subject_columns`` CHECK constraint (store.tables)
    # guarantees that the columns a row's scope names are set.
    limits = list(static.limit_rules(team_ids))
    for row in data.limits:
        scope = Scope(row.scope)
        subject = cast(str | tuple[str, str], {
            Scope.KEY: row.key_id, Scope.TEAM: row.team_id, Scope.MODEL: row.model,
            Scope.TEAM_MODEL: (row.team_id, row.model)}[scope])
        limits.append(LimitRule(scope, subject, RateLimit(row.rpm, row.tpm, row.concurrency)))
    budgets = list(static.budget_rules(team_ids))
    for b in data.budgets:
        owner = cast(str, b.team_id if b.scope == "team" else b.key_id)
        budgets.append(BudgetRule(Scope(b.scope), owner,
                                  Budget(b.amount_nanos, Period(b.period), b.mode == "hard")))
    return Policy(currency=static.currency, limits=limits, budgets=budgets, team_weights=weights,
                  prices=prices, team_names={t.id: t.name for t in data.teams})


def _unreadable_key(provider: str, error: Exception) -> None:
    log.error("provider %r is served without its stored API key: %s", provider, error)


class SnapshotFeed:
    """Builds the worker's snapshot from the store and keeps it current (a supervised service)."""

    name = "snapshot-feed"

    def __init__(self, url: str, platform: Platform, *, loopback_base_url: str,
                 state: GatewayState | None = None, cipher: CredentialCipher | None = None,
                 environ: Mapping[str, str] | None = None, refresh_s: float = 1.0) -> None:
        self._url = url
        self._state = state
        self._platform = platform  # the file: its admission rules; the catalog comes from the store
        self._loopback = loopback_base_url
        self._cipher = cipher
        self._environ = os.environ if environ is None else environ
        self._refresh_s = refresh_s
        self._db: Database | None = None
        self._failed_at: int | None = None
        self._wake = asyncio.Event()
        self._listener: RevisionListener | None = None
        self._listen_retry_at = 0.0

    def wake(self) -> None:
        """Rebuild now (the store changed); safe to call any number of times."""
        self._wake.set()

    async def _listen(self) -> None:
        """Keep a LISTEN connection on PostgreSQL; without one, polling alone still works."""
        assert self._db is not None
        if self._db.backend != "postgresql" or (self._listener and self._listener.alive):
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._listen_retry_at:
            return
        self._listen_retry_at = loop.time() + LISTEN_RETRY_S
        try:
            self._listener = await RevisionListener.open(self._url, self.wake, self._lost)
        except Exception as exc:  # noqa: BLE001 - degrade to polling, say so
            log.warning("cannot LISTEN for store changes (%s); polling every %gs instead",
                        exc, self._refresh_s)

    def _lost(self) -> None:
        log.warning("the LISTEN connection to the store dropped; polling until it is back")
        self.wake()

    async def _build(self) -> tuple[Platform, Snapshot]:
        assert self._db is not None
        # Identity first: the snapshot is labelled with its revision, and the catalog read after
        # it is at least as new. (The other order could label an older catalog with a newer
        # revision, and that change would never be picked up.)
        identity, data = await build_identity_and_rules(self._db)
        async with self._db.read("loading the catalog") as tx:
            stored = await repo.load_catalog(tx, self._cipher, unreadable=_unreadable_key)
        served = platform_from_store(stored, self._platform.policy,
                                     loopback_base_url=self._loopback, environ=self._environ)
        return served, Snapshot(served.catalog, identity,
                                assemble_policy(served.policy, served.prices, data))

    async def _swap(self, state: GatewayState, served: Platform, snapshot: Snapshot) -> None:
        """Engines first (new pools and simulators exist before any request can pick them)."""
        state.client.sync(served.catalog.deployments.values())
        retired = state.simulators.sync(served.simulators)
        state.snapshot = snapshot
        for app in retired:
            await app.aclose()

    async def start(self) -> None:
        state = self._state
        assert state is not None, "a SnapshotFeed serves one GatewayState: pass state="
        self._db = Database(self._url)
        served, snapshot = await self._build()
        await self._swap(state, served, snapshot)
        log.info("snapshot built: %d models, %d keys at revision %d", len(snapshot.catalog.models),
                 len(snapshot.identity), snapshot.identity.revision)
        self._db.on_change.append(self.wake)
        await self._listen()

    async def run(self) -> None:
        state = self._state
        assert self._db is not None and state is not None
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._refresh_s)
            self._wake.clear()
            await self._listen()
            seen = state.snapshot.identity.revision
            revision = await current_revision(self._db)
            if revision in (seen, self._failed_at):
                continue
            try:
                served, snapshot = await self._build()
            except Exception:  # keep serving the last good snapshot; say why once per revision
                log.exception("snapshot at revision %d could not be built; still serving %d",
                              revision, seen)
                self._failed_at = revision
                continue
            old = state.snapshot.identity
            await self._swap(state, served, snapshot)
            log.info("snapshot rebuilt: %d models, %d keys at revision %d",
                     len(snapshot.catalog.models), len(snapshot.identity), snapshot.identity.revision)
            # Requests authenticate synchronously right after picking a snapshot up, so the old
            # keys can go now; a slice per loop turn keeps the freeing from stalling requests.
            while old.retire(_RETIRE_SLICE):
                await asyncio.sleep(0)

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        if self._db is not None:
            await self._db.close()
