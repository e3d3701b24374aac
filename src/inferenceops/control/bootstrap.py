"""Preparing the store before any worker starts: migrations, first-start bootstrap, the catalog.

``prepare_store`` runs once in the CLI's main process (``inferenceops serve``):
migrations (under the store's cross-process lock), then first-start bootstrap —
a platform-admin user and key (printed once), and for the embedded default a
``demo`` team granted the demo models, all audited by ``system:bootstrap`` —
then the catalog: ``--config FILE`` is applied to the store
(``inferenceops.config.apply``) on every start; without one, an empty store
gets the embedded default's catalog and a non-empty one is served as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.config.apply import ApplyPlan, apply_platform
from inferenceops.config.spec import Platform
from inferenceops.platform import Catalog, KeyHasher
from inferenceops.platform.identity import PLATFORM_ADMIN
from inferenceops.platform.keys import new_secret, visible_prefix
from inferenceops.store import Conflict, Database, repo, upgrade
from inferenceops.store.migrate import migration_lock

log = logging.getLogger("inferenceops.control")

#: Under .invalid (RFC 2606): no IdP can have verified it, so no sign-in claims this account by
#: email (``admin.linking`` never links a platform-role user by email either).
BOOTSTRAP_EMAIL = "bootstrap@inferenceops.invalid"
BOOTSTRAP_ACTOR = "system:bootstrap"
DEMO_TEAM = "demo"
ALL_SCOPES = ("inference", "batch", "admin")


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
