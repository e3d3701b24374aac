"""Identity against the real store, on SQLite and PostgreSQL, with two gateway replicas.

Proves, through real server processes sharing one store: a key created in the
store starts working on every replica; the official SDK gets 401 for a bad key
and 404 ``model_not_found`` for a model not granted to the key's team (and
does not see it listed); the key's last use is recorded in the store (off the
hot path); a revoked key is refused by every replica within 2 s.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import orjson
import pytest

from inferenceops.platform import KeyHasher
from inferenceops.platform.keys import new_secret, visible_prefix
from inferenceops.store import Database, repo
from tests.integration._harness import ADMIN_KEY, FakeUpstreams, Gateway, SpawnGateway, platform_yaml
from tests.support.fake_upstream import FakeUpstream
from tests.support.postgres import Postgres, probe, run_sync

pytestmark = pytest.mark.integration

SECRET = "integration-platform-secret-shared-by-all-replicas"
REVOCATION_BOUND_S = 2.0


@dataclass
class SharedStore:
    url: str
    env: dict[str, str]


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'shared' / 'inferenceops.db'}"
        yield SharedStore(url, _env(url))
        return
    dsn, reason = run_sync(probe())
    if dsn is None:
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 ({reason})")
    pg = Postgres(dsn)
    name = run_sync(pg.create())
    url = pg.url(name)
    yield SharedStore(url, _env(url))
    run_sync(pg.drop(name))


def _env(url: str) -> dict[str, str]:
    return {"INFERENCEOPS_DATABASE_URL": url, "INFERENCEOPS_SECRET_KEY": SECRET,
            "INFERENCEOPS_OUTBOX_FLUSH_S": "0.2"}


def _config(upstreams: FakeUpstreams) -> str:
    url = upstreams.serve(FakeUpstream())
    return platform_yaml(
        [{"name": "fake", "engine": "openai", "served_model": "ok", "replicas": [{"url": url}]}],
        [{"name": "granted-model", "deployment": "fake"},
         {"name": "other-model", "deployment": "fake"}])


async def _team_key(url: str) -> tuple[str, str]:
    """A team granted only ``granted-model``, a member, and a key for them: (key id, secret)."""
    secret = new_secret()
    db = Database(url)
    try:
        async with db.transaction() as tx:
            team = await repo.create_team(tx, "search")
            await repo.grant(tx, team.id, "granted-model")
            user = await repo.create_user(tx, "dev@example.com")
            await repo.set_membership(tx, team.id, user.id, "member")
            key = await repo.create_api_key(
                tx, name="ci", prefix=visible_prefix(secret),
                digest=KeyHasher(SECRET.encode()).digest(secret), user_id=user.id, team_id=team.id)
    finally:
        await db.close()
    return key.id, secret


async def _last_used(url: str, key_id: str) -> object:
    db = Database(url)
    try:
        async with db.read() as tx:
            return (await repo.get_api_key(tx, key_id)).last_used_at
    finally:
        await db.close()


async def _revoke(url: str, key_id: str) -> None:
    db = Database(url)
    try:
        async with db.transaction() as tx:
            await repo.revoke_api_key(tx, key_id)
    finally:
        await db.close()


def _status(gw: Gateway, secret: str) -> int:
    request = urllib.request.Request(f"{gw.base_url}/models",
                                     headers={"Authorization": f"Bearer {secret}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as error:
        return error.code


def _wait_for(gws: list[Gateway], secret: str, status: int, deadline_s: float) -> float:
    """Seconds until every gateway answers ``status`` for this key; fails past the deadline."""
    started = time.monotonic()
    pending = list(gws)
    while pending:
        pending = [gw for gw in pending if _status(gw, secret) != status]
        elapsed = time.monotonic() - started
        assert elapsed <= deadline_s, f"{[gw.name for gw in pending]} still not {status}"
        if pending:
            time.sleep(0.05)
    return time.monotonic() - started


def test_team_key_sees_only_granted_models_and_revocation_reaches_every_replica(
        spawn_gateway: SpawnGateway, upstreams: FakeUpstreams, shared_store: SharedStore) -> None:
    config = _config(upstreams)
    first = spawn_gateway(config=config, env=shared_store.env, name="replica-a")
    second = spawn_gateway(config=config, env=shared_store.env, name="replica-b")
    key_id, secret = run_sync(_team_key(shared_store.url))
    _wait_for([first, second], secret, 200, deadline_s=5)

    for gw in (first, second):
        with openai.OpenAI(base_url=gw.base_url, api_key=secret, max_retries=0) as sdk:
            assert [m.id for m in sdk.models.list()] == ["granted-model"]
            reply = sdk.chat.completions.create(model="granted-model",
                                                messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content == "hello"
            with pytest.raises(openai.NotFoundError) as missing:
                sdk.chat.completions.create(model="other-model",
                                            messages=[{"role": "user", "content": "hi"}])
            assert missing.value.body["code"] == "model_not_found"
            with pytest.raises(openai.NotFoundError):
                sdk.models.retrieve("other-model")
        with openai.OpenAI(base_url=gw.base_url, api_key=secret + "x", max_retries=0) as bad, \
                pytest.raises(openai.AuthenticationError) as denied:
            bad.models.list()
        assert denied.value.body["code"] == "invalid_api_key"

    deadline = time.monotonic() + 5  # last use is written off the hot path, every 0.2 s here
    while run_sync(_last_used(shared_store.url, key_id)) is None:
        assert time.monotonic() < deadline, "last_used_at was never recorded"
        time.sleep(0.1)

    run_sync(_revoke(shared_store.url, key_id))
    took = _wait_for([first, second], secret, 401, deadline_s=REVOCATION_BOUND_S)
    print(f"revocation refused by both replicas after {took:.2f}s")


#: A poll interval far beyond the bound: only the change notification can meet the bound.
SLOW_POLL_S = "30"


def _admin(gw: Gateway, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{gw.origin}/admin/api/v1{path}", method=method,
        data=None if body is None else orjson.dumps(body),
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{method} {path}: {error.code} {error.read()!r}") from None


def test_store_changes_reach_the_data_plane_when_made_not_at_the_next_poll(
        spawn_gateway: SpawnGateway, upstreams: FakeUpstreams, shared_store: SharedStore) -> None:
    """PostgreSQL: NOTIFY reaches every replica. SQLite: the process that made the change."""
    config = _config(upstreams)
    env = {**shared_store.env, "INFERENCEOPS_SNAPSHOT_REFRESH_S": SLOW_POLL_S}
    on_pg = shared_store.url.startswith("postgresql")
    gws = [spawn_gateway(config=config, env=env, name=f"replica-{i}") for i in range(2 if on_pg else 1)]
    team = _admin(gws[0], "POST", "/teams", {"name": "notify"})
    user = _admin(gws[0], "POST", "/users", {"email": "notify@example.com"})
    _admin(gws[0], "PUT", f"/teams/{team['id']}/members/{user['id']}", {"role": "member"})
    created = _admin(gws[0], "POST", "/keys", {"name": "n", "team_id": team["id"],
                                               "user_id": user["id"], "scopes": ["inference"]})
    took = _wait_for(gws, created["secret"], 200, deadline_s=REVOCATION_BOUND_S)
    _admin(gws[-1], "POST", f"/keys/{created['id']}/revoke")
    took = max(took, _wait_for(gws, created["secret"], 401, deadline_s=REVOCATION_BOUND_S))
    print(f"store changes seen by {len(gws)} replica(s) within {took:.2f}s (poll every {SLOW_POLL_S}s)")


async def _set_standing(url: str, email: str, *, role: str | None = None,
                        disabled: bool | None = None) -> None:
    """Change a user's membership of ``search`` (None: take it away) or disable them."""
    db = Database(url)
    try:
        async with db.transaction() as tx:
            user = await repo.get_user_by_email(tx, email)
            team = await repo.get_team_by_name(tx, "search")
            if disabled is not None:
                await repo.set_user_disabled(tx, user.id, disabled)
            elif role is None:
                await repo.remove_membership(tx, team.id, user.id)
            else:
                await repo.set_membership(tx, team.id, user.id, role)
    finally:
        await db.close()


def test_leaving_the_team_or_a_lower_role_disables_the_key_on_every_replica(
        spawn_gateway: SpawnGateway, upstreams: FakeUpstreams, shared_store: SharedStore) -> None:
    """A key speaks for its owner in its team: no revocation needed when the owner's standing goes."""
    config = _config(upstreams)
    gws = [spawn_gateway(config=config, env=shared_store.env, name=f"replica-{i}") for i in range(2)]
    _, secret = run_sync(_team_key(shared_store.url))
    _wait_for(gws, secret, 200, deadline_s=5)
    for change, status in (({"role": None}, 401), ({"role": "member"}, 200),
                           ({"role": "viewer"}, 401),  # a viewer may not spend the team's capacity
                           ({"role": "member"}, 200), ({"disabled": True}, 401)):
        run_sync(_set_standing(shared_store.url, "dev@example.com", **change))
        took = _wait_for(gws, secret, status, deadline_s=REVOCATION_BOUND_S)
        print(f"{change} -> {status} on both replicas after {took:.2f}s")
