"""A gateway killed with SIGKILL while holding a team's only concurrency slot (Redis admission).

Real processes and the real Redis at 127.0.0.1:6379: the slot's lease lasts the
deployment's total timeout + queue wait + 60 s (~26 min here), so only the dead
instance's missing heartbeat (TTL 6 s, the default) can free it. The successor
gateway, a new process and so a new instance, must admit the team's next request
within 15 s of the kill, and must not have inherited the slot.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from inferenceops.platform import KeyHasher
from inferenceops.platform.keys import new_secret, visible_prefix
from inferenceops.store import Database, repo
from tests.integration._harness import FakeUpstreams, Gateway, SpawnGateway
from tests.support.fake_upstream import FakeUpstream
from tests.support.postgres import run_sync

pytestmark = pytest.mark.integration

SECRET = "integration-platform-secret-for-crash-tests"
REDIS_URL = os.environ.get("INFERENCEOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
FREED_WITHIN_S = 15.0
CHAT: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hi"}],
                        "max_tokens": 1}


@pytest.fixture
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis answers at {REDIS_URL}: {exc}")
    return REDIS_URL


async def _team_key(url: str) -> str:
    """Team ``ml`` (a fresh id, so its counters are new) granted ``chat``, with one member key."""
    hasher = KeyHasher(SECRET.encode())
    secret = new_secret()
    db = Database(url)
    try:
        async with db.transaction() as tx:
            user = await repo.create_user(tx, f"dev-{uuid.uuid4().hex[:6]}@example.com")
            team = await repo.create_team(tx, "ml")
            await repo.grant(tx, team.id, "chat")
            await repo.set_membership(tx, team.id, user.id, "member")
            await repo.create_api_key(tx, name="ml", prefix=visible_prefix(secret),
                                      digest=hasher.digest(secret), user_id=user.id, team_id=team.id)
    finally:
        await db.close()
    return secret


async def _chat(session: aiohttp.ClientSession, gw: Gateway, secret: str) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{gw.base_url}/chat/completions", json=CHAT,
                            headers={"Authorization": f"Bearer {secret}"}) as resp:
        return resp.status, await resp.json(content_type=None)


async def _hold_the_slot_then_kill(gw: Gateway, secret: str) -> float:
    """Open a stream (the team's one slot), prove the slot is taken, SIGKILL the gateway."""
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 10
        while (await _chat(session, gw, secret))[0] == 401:  # the key reaches the snapshot
            assert time.monotonic() < deadline, "the new key never reached the gateway"
            await asyncio.sleep(0.1)
        stream = await session.post(f"{gw.base_url}/chat/completions", json={**CHAT, "stream": True},
                                    headers={"Authorization": f"Bearer {secret}"})
        assert stream.status == 200, await stream.text()
        assert (await stream.content.readline()).startswith(b"data: ")  # in flight
        status, doc = await _chat(session, gw, secret)
        assert status == 429 and "concurrent requests of team" in doc["error"]["message"], doc
        os.killpg(gw.proc.pid, signal.SIGKILL)  # the server and its workers, no shutdown at all
        killed_at = time.monotonic()
        stream.close()
    await asyncio.get_running_loop().run_in_executor(None, gw.proc.wait)
    return killed_at


async def _admitted_within(gw: Gateway, secret: str, killed_at: float) -> tuple[float, list[int]]:
    """Ask until admitted (or FREED_WITHIN_S after the kill): the seconds it took, the statuses."""
    statuses: list[int] = []
    async with aiohttp.ClientSession() as session:
        while True:
            status, doc = await _chat(session, gw, secret)
            statuses.append(status)
            if status == 200:
                return time.monotonic() - killed_at, statuses
            assert status == 429, doc
            assert time.monotonic() - killed_at < FREED_WITHIN_S, (
                f"still refused {FREED_WITHIN_S} s after the kill: {doc}")
            await asyncio.sleep(0.2)


def test_a_killed_gateways_concurrency_slot_is_admitted_again_within_15_s(
        spawn_gateway: SpawnGateway, upstreams: FakeUpstreams, redis_url: str,
        tmp_path: Path) -> None:
    minute_long = FakeUpstream(stream_chunks=1200, chunk_delay_s=0.05)
    config = f"""
deployments:
  - name: fake
    engine: openai
    served_model: ok
    replicas: [{{url: "{upstreams.serve(minute_long)}"}}]
models:
  - name: chat
    deployment: fake
limits:
  - {{team: ml, concurrency: 1}}
"""
    env = {"INFERENCEOPS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
           "INFERENCEOPS_SECRET_KEY": SECRET, "INFERENCEOPS_REDIS_URL": redis_url}
    doomed = spawn_gateway(config=config, env=env, name="doomed")
    secret = run_sync(_team_key(env["INFERENCEOPS_DATABASE_URL"]))
    killed_at = asyncio.run(_hold_the_slot_then_kill(doomed, secret))
    successor = spawn_gateway(config=config, env=env, name="successor")
    ready_after = time.monotonic() - killed_at
    took, statuses = asyncio.run(_admitted_within(successor, secret, killed_at))
    print(f"admitted {took:.1f} s after the kill (the successor was ready after {ready_after:.1f} s; "
          f"{statuses.count(429)} refusals before)")
    assert took < FREED_WITHIN_S
