"""Turns the stored identity into the data plane's in-memory ``Identity`` index.

Runs off the hot path, in each serving process, at start and whenever the
store's revision moves. Keys of disabled users are left out (as if revoked).
Work is chunked with event-loop turns in between, so 100,000 keys never hold
the loop for long while requests are being served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from inferenceops.platform import ApiKey, Identity, Principal
from inferenceops.store import repo
from inferenceops.store.db import Database
from inferenceops.store.records import IdentityData

_CHUNK = 5000


async def build_identity(db: Database) -> Identity:
    data = await repo.load_identity(db, batch_size=_CHUNK)
    entries: list[tuple[bytes, ApiKey]] = []
    for chunk in _chunks(data):
        entries.extend(chunk)
        await asyncio.sleep(0)
    grants: dict[str, list[str]] = {}
    for grant in data.grants:
        grants.setdefault(grant.team_id, []).append(grant.model)
    return Identity(entries, grants, revision=data.revision)


def _chunks(data: IdentityData) -> Iterator[list[tuple[bytes, ApiKey]]]:
    users = {u.id: u for u in data.users}
    principals: dict[str, Principal] = {}
    for u in data.users:
        principals[u.id] = Principal(u.id, "user", u.platform_role)
    for sa in data.service_accounts:
        principals[sa.id] = Principal(sa.id, "service_account")
    chunk: list[tuple[bytes, ApiKey]] = []
    for k in data.keys:
        owner = k.user_id or k.service_account_id
        if owner is None or owner not in principals:
            continue
        if k.user_id is not None and users[k.user_id].disabled:
            continue
        expires = k.expires_at.timestamp() if k.expires_at is not None else None
        chunk.append((k.digest, ApiKey(k.id, k.prefix, principals[owner], k.team_id, k.scopes,
                                       k.allowed_models, expires)))
        if len(chunk) >= _CHUNK:
            yield chunk
            chunk = []
    yield chunk


async def current_revision(db: Database) -> int:
    async with db.read("reading the store revision") as session:
        return await repo.revision(session)
