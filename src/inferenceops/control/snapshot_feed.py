"""The snapshot feed: each worker's snapshot built from the store and kept fresh.

``SnapshotFeed`` runs in every worker: it builds the snapshot (the catalog
from the store, identity, admission policy) at start-up, then rebuilds and
swaps it whenever the store's revision counter moves. It hears of a change at
once — PostgreSQL ``LISTEN`` (every replica), or ``Database.on_change`` for
changes this process made (SQLite's single process) — and also polls the
counter (one single-row read) every ``refresh_s``, the safety net for a lost
listener and for other processes on SQLite. So a revoked key is refused by
every replica within well under ``refresh_s`` plus build time. The hot path
only ever sees the swapped snapshot. It is one of the process's supervised
services: ``start`` builds the first snapshot (before the process is ready; with
the in-memory admission ledger, its counters are first rebuilt from the usage
ledger, ``control.spend_restore``),
``run`` keeps it fresh, ``stop`` closes its connections. What the data plane
queues for the store (usage, keys' last use, alerts) is the outbox writer's.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from contextlib import suppress
from typing import TYPE_CHECKING

from inferenceops.admission.memory_ledger import MemoryLedger
from inferenceops.config.source import platform_from_store
from inferenceops.config.spec import Platform
from inferenceops.control.policy import assemble_policy
from inferenceops.control.spend_restore import restore_spend
from inferenceops.platform import Snapshot
from inferenceops.store import Database, repo
from inferenceops.store.credentials import CredentialCipher
from inferenceops.store.notify import RevisionListener
from inferenceops.store.repo.drains import all_drained
from inferenceops.store.repo.guardrails import load_guardrails
from inferenceops.store.snapshot_builder import build_identity_and_rules, current_revision

if TYPE_CHECKING:
    from inferenceops.gateway.state import GatewayState

log = logging.getLogger("inferenceops.control")

_RETIRE_SLICE = 2000
LISTEN_RETRY_S = 10.0


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
            drained = await all_drained(tx)
            guardrails = await load_guardrails(tx)  # the API's policies; the file's are served.policy's
        served = platform_from_store(stored, self._platform.policy,
                                     loopback_base_url=self._loopback, environ=self._environ,
                                     drained=drained)
        return served, Snapshot(served.catalog, identity,
                                assemble_policy(served.policy, served.prices, data, guardrails))

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
        admission = state.admission
        if admission is not None and isinstance(admission.ledger, MemoryLedger):
            # Before the first request: this process's counters start from what the usage
            # ledger says was spent (``spend_restore``), not from zero.
            await restore_spend(self._db, snapshot, admission.ledger)
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
