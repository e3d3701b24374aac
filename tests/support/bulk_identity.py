"""Fill a store with many teams, users and keys fast, for scale tests and benchmarks.

Core inserts on the connection (executemany): the ORM bulk path splits its
batches whenever a nullable JSON value flips between None and a list, which
is ~20x slower here. Key ``i``'s digest is ``digest_of(i)``; keys at index
``>= keys`` are stored revoked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import insert

from inferenceops.store import Database
from inferenceops.store.tables_identity import ApiKey, Grant, Membership, Team, User

NOW = datetime(2026, 5, 1, tzinfo=UTC)


async def fill(db: Database, *, teams: int, keys: int, revoked: int,
               digest_of: Callable[[int], bytes] = lambda _i: os.urandom(32)) -> None:
    team_rows = [{"id": f"team_{i:020}", "name": f"team-{i}", "weight": 1, "created_at": NOW,
                  "updated_at": NOW} for i in range(teams)]
    user_rows = [{"id": f"usr_{i:020}", "email": f"u{i}@x.io", "display_name": "",
                  "disabled": False, "created_at": NOW} for i in range(teams)]
    key_rows = [{"id": f"key_{i:020}", "name": "", "prefix": f"sk-io-{i:06}", "digest": digest_of(i),
                 "team_id": f"team_{i % teams:020}", "user_id": f"usr_{i % teams:020}",
                 "scopes": ["inference"], "allowed_models": None if i % 2 else ["m0"],
                 "created_at": NOW, "revoked_at": NOW if i >= keys else None}
                for i in range(keys + revoked)]
    async with db.transaction() as tx:
        conn = await tx.connection()
        await conn.execute(insert(Team.__table__), team_rows)
        await conn.execute(insert(User.__table__), user_rows)
        await conn.execute(insert(Membership.__table__), [
            {"team_id": t["id"], "user_id": u["id"], "role": "member", "created_at": NOW}
            for t, u in zip(team_rows, user_rows, strict=True)])
        await conn.execute(insert(Grant.__table__), [
            {"team_id": t["id"], "model": f"m{j}", "created_at": NOW}
            for t in team_rows for j in range(3)])
        for start in range(0, len(key_rows), 20_000):
            await conn.execute(insert(ApiKey.__table__), key_rows[start:start + 20_000])
