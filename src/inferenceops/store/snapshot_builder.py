"""Turns the stored identity into the data plane's in-memory ``Identity`` index.

Runs off the hot path, in each serving process, at start and whenever the
store's revision moves. Each key enters with the power ``key_power`` gives it
from its owner's standing at this revision: a key whose owner is disabled, has
left the key's team or holds no role there that can use any of its scopes is
left out (as if revoked); the others keep only the scopes that role allows.
Work is chunked with event-loop turns in between, so 100,000 keys never hold
the loop for long while requests are being served. The cyclic garbage
collector is paused meanwhile (allocating 100,000 objects otherwise triggers
full collections of 50-120 ms each, measured), and what is alive afterwards
is frozen out of later collections (``gc.freeze``): process-wide, on purpose.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from dataclasses import replace

from inferenceops.platform import ApiKey, Identity, Principal
from inferenceops.platform.identity import key_power
from inferenceops.store import repo
from inferenceops.store.db import Database
from inferenceops.store.records import ActiveKey, IdentityData

_CHUNK = 1000  # keys indexed per event-loop turn (~10 ms each, measured)
_READ_BATCH = 1000  # rows converted per event-loop turn while reading


async def build_identity(db: Database) -> Identity:
    return (await build_identity_and_rules(db))[0]


async def build_identity_and_rules(db: Database) -> tuple[Identity, IdentityData]:
    """The identity index, plus what the policy is built from (teams, limits, budgets; no keys)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        data = await repo.load_identity(db, batch_size=_READ_BATCH)
        rows = list(data.keys)
        data = replace(data, keys=())  # ``rows`` is now the only holder: freed slice by slice
        grants: dict[str, list[str]] = {}
        for grant in data.grants:
            grants.setdefault(grant.team_id, []).append(grant.model)
        index: dict[bytes, ApiKey] = {}
        for chunk in _chunks(rows, data):
            index.update(chunk)
            await asyncio.sleep(0)
        return Identity(index, grants, revision=data.revision), data
    finally:
        # Everything alive now is long-lived: freeze it out of future collections, or the
        # first collection after re-enabling walks all of it at once (~100 ms, measured).
        gc.freeze()
        if was_enabled:
            gc.enable()


def _chunks(rows: list[ActiveKey], data: IdentityData) -> Iterator[list[tuple[bytes, ApiKey]]]:
    """Index ``rows`` a slice at a time, dropping each slice once indexed."""
    users = {u.id: u for u in data.users}
    accounts = {sa.id for sa in data.service_accounts}
    roles = {(m.team_id, m.user_id): m.role for m in data.memberships}
    # Keys share a few principals and scope sets: build each once.
    principals: dict[tuple[str, str | None], Principal] = {}
    scope_sets: dict[frozenset[str], frozenset[str]] = {}
    while rows:
        chunk: list[tuple[bytes, ApiKey]] = []
        for k in rows[-_CHUNK:]:
            if k.user_id is not None:
                user = users.get(k.user_id)
                if user is None:
                    continue
                power = key_power(k.scopes, k.team_id, service_account=False,
                                  owner_enabled=not user.disabled, platform_role=user.platform_role,
                                  team_role=roles.get((k.team_id, k.user_id)) if k.team_id else None)
                owner, kind = user.id, "user"
            elif k.service_account_id in accounts:
                power = key_power(k.scopes, k.team_id, service_account=True)
                owner, kind = k.service_account_id, "service_account"
            else:
                continue
            if power is None:
                continue
            principal = principals.get((owner, power.platform_role))
            if principal is None:
                principal = principals[owner, power.platform_role] = Principal(
                    owner, kind, power.platform_role)
            scopes = scope_sets.setdefault(power.scopes, power.scopes)
            expires = k.expires_at.timestamp() if k.expires_at is not None else None
            chunk.append((k.digest, ApiKey(k.id, k.prefix, principal, k.team_id, scopes,
                                           k.allowed_models, expires,
                                           background_only=k.background_only,
                                           meter_id=k.lineage_id or k.id)))
        del rows[-_CHUNK:]
        yield chunk


async def current_revision(db: Database) -> int:
    async with db.read("reading the store revision") as session:
        return await repo.revision(session)
