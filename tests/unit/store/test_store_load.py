"""load_identity at scale: 100,000 live keys (+1,000 revoked) and 1,000 teams, streamed in batches.

Prints how long the load took, the longest the event loop was held, and the time
spent in full garbage collections (a process-wide pause that allocating 100k
objects triggers; the app can ``gc.freeze()`` after swapping a snapshot). No
timing asserts (shared CI machines vary), only that every live key arrives intact.
"""

from __future__ import annotations

import asyncio
import gc
import time

from tests.support.bulk_identity import fill

from inferenceops.store import Database, repo

TEAMS, KEYS, REVOKED = 1_000, 100_000, 1_000


async def _fill(db: Database) -> None:
    await fill(db, teams=TEAMS, keys=KEYS, revoked=REVOKED)


async def test_load_100k_keys(db: Database) -> None:
    started = time.perf_counter()
    await _fill(db)
    filled = time.perf_counter() - started

    stalls: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now

    full_gcs: list[float] = []  # full collections are process-wide pauses, not the loader's own hold

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2:
            full_gcs.append(time.perf_counter() * (1 if phase == "stop" else -1))

    task = asyncio.create_task(ticker())
    gc.callbacks.append(on_gc)
    started = time.perf_counter()
    try:
        identity = await repo.load_identity(db, batch_size=5000)
    finally:
        loaded = time.perf_counter() - started
        gc.callbacks.remove(on_gc)
        stop.set()
        await task

    assert len(identity.keys) == KEYS
    assert len({k.digest for k in identity.keys}) == KEYS
    assert max(k.id for k in identity.keys) == f"key_{KEYS - 1:020}"  # the revoked ones are not there
    assert len(identity.teams) == TEAMS and len(identity.users) == TEAMS
    assert len(identity.memberships) == TEAMS and len(identity.grants) == 3 * TEAMS
    sample = next(k for k in identity.keys if k.id == "key_00000000000000000042")
    assert sample.scopes == {"inference"} and sample.allowed_models == {"m0"}
    assert sample.team_id == "team_00000000000000000042" and len(sample.digest) == 32
    print(f"\n[{db.backend}] insert {KEYS + REVOKED:,} keys + {TEAMS:,} teams: {filled:.2f} s; "
          f"load_identity: {loaded:.2f} s; longest loop stall {max(stalls) * 1000:.0f} ms "
          f"over {len(stalls)} ticks; {len(full_gcs) // 2} full GCs took {sum(full_gcs) * 1000:.0f} ms")
