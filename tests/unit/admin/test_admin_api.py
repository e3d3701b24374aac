"""The admin REST API against a real store (SQLite, and PostgreSQL when it answers).

The centre is ``CASES``: every route × every role (plus no credentials), with
the status each role must get — denials included — and, for every mutation,
exactly one audit entry with the caller's actor and source (none when refused;
``POST /apply`` writes one per change it reports).
A test keeps ``CASES`` complete: a new route without a row fails it.

One migrated store and one seeded world per backend for the module (a fresh
database per case would make PostgreSQL too slow); each case makes its own
throwaway targets, so the cases do not depend on each other.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from tests.support.postgres import Postgres, probe

from inferenceops.admin.api import build_admin_app
from inferenceops.admin.api.app import ROUTERS
from inferenceops.admin.principal import AdminPrincipal
from inferenceops.metering.prices import PriceSpec
from inferenceops.platform.keys import KeyHasher, new_secret, visible_prefix
from inferenceops.store import CredentialCipher, Database, repo
from inferenceops.store.migrate import upgrade
from inferenceops.store.repo import admin_queries as q
from inferenceops.store.repo import drains, guardrails, invitations, sign_in_links
from inferenceops.store.repo.admin_queries import find_api_key_by_digest
from inferenceops.store.repo.audit import list_audit
from inferenceops.store.tables import utcnow

pytestmark = pytest.mark.asyncio(loop_scope="module")

V1 = "/admin/api/v1"
CLIENT = "10.9.8.7"
HASHER = KeyHasher(b"admin-api-test-platform-secret-32+bytes")
CIPHER = CredentialCipher.derived_from(b"admin-api-test-platform-secret-32+bytes")
ROLES = ("admin", "auditor", "billing", "ownerA", "memberA", "viewerA", "ownerB", "saA")


# ---- a tiny ASGI client -----------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


async def call(app: FastAPI, method: str, path: str, body: Any = None, *, secret: str | None = None,
               headers: dict[str, str] | None = None, raw: bytes | None = None,
               client: str = CLIENT, repeated: Sequence[tuple[str, str]] = ()) -> Reply:
    """One request to ``app`` from ``client``; ``repeated``: more headers, after ``headers``
    (a name may come again)."""
    path, _, query = path.partition("?")
    data = raw if raw is not None else (b"" if body is None else orjson.dumps(body))
    hdrs = {"content-type": "application/json", **(headers or {})}
    if secret is not None:
        hdrs["authorization"] = f"Bearer {secret}"
    if data:
        hdrs["content-length"] = str(len(data))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "path": path, "raw_path": path.encode(), "query_string": query.encode(),
             "headers": [(k.lower().encode(), v.encode())
                         for k, v in [*hdrs.items(), *repeated]],
             "client": (client, 40000), "server": ("127.0.0.1", 8080), "scheme": "http",
             "root_path": ""}
    sent = False
    out: dict[str, Any] = {"chunks": []}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            out["chunks"].append(message.get("body", b""))

    await app(scope, receive, send)
    return Reply(out["status"], out["headers"], b"".join(out["chunks"]))


# ---- the world --------------------------------------------------------------------------------

@dataclass
class World:
    db: Database
    app: FastAPI
    ids: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # role -> admin key secret
    actors: dict[str, str] = field(default_factory=dict)  # role -> "key:<id>"

    def unique(self, stem: str) -> str:
        return f"{stem}-{uuid.uuid4().hex[:8]}"

    async def fresh_team(self) -> str:
        async with self.db.transaction() as tx:
            return (await repo.create_team(tx, self.unique("t"))).id

    async def fresh_user(self, *, member_of: str | None = None, role: str = "member") -> str:
        async with self.db.transaction() as tx:
            user = await repo.create_user(tx, f"{self.unique('u')}@example.com")
            if member_of is not None:
                await repo.set_membership(tx, member_of, user.id, role)
            return user.id

    async def fresh_key(self, user: str = "memberA", team: str = "A") -> tuple[str, str]:
        secret = new_secret()
        async with self.db.transaction() as tx:
            key = await repo.create_api_key(
                tx, name="fresh", prefix=visible_prefix(secret), digest=HASHER.digest(secret),
                user_id=self.ids[user], team_id=self.ids[team], scopes=("inference", "admin"))
        return key.id, secret

    async def fresh_grant(self, team: str = "A") -> str:
        model = self.unique("model")
        async with self.db.transaction() as tx:
            await repo.grant(tx, self.ids[team], model)
        return model

    async def fresh_limit(self, key_of: str | None = None) -> str:
        """A limit on a new model for team A, or on a new key of user ``key_of`` in team A."""
        key_id = None if key_of is None else (await self.fresh_key(user=key_of))[0]
        async with self.db.transaction() as tx:
            if key_id is not None:
                rule, _ = await repo.set_limit(tx, scope="key", key_id=key_id, rpm=10)
            else:
                rule, _ = await repo.set_limit(tx, scope="team_model", team_id=self.ids["A"],
                                               model=self.unique("m"), rpm=10)
        return rule.id

    async def fresh_budget(self, key_of: str | None = None) -> str:
        """Team A's monthly budget (set anew), or a budget on a new key of user ``key_of``."""
        key_id = None if key_of is None else (await self.fresh_key(user=key_of))[0]
        async with self.db.transaction() as tx:
            subject = {"scope": "key", "key_id": key_id} if key_id else {
                "scope": "team", "team_id": self.ids["A"]}
            rule, _ = await repo.set_budget(tx, **subject, amount_nanos=10**9, currency="USD",
                                            period="monthly")
        return rule.id

    async def fresh_provider(self, *, with_key: bool = False) -> str:
        async with self.db.transaction() as tx:
            return (await repo.create_provider(
                tx, {"name": self.unique("prov"), "base_url": "https://upstream.example/v1"},
                api_key="sk-upstream-secret" if with_key else None, cipher=CIPHER)).id

    async def fresh_deployment(self) -> str:
        async with self.db.transaction() as tx:
            return (await repo.create_deployment(tx, {
                "name": self.unique("dep"), "engine": "simulator", "served_model": "m",
                "profile": "llama-3.1-8b-h100"})).id

    async def fresh_model(self, granted_to: str | None = "A") -> str:
        """A model on a new deployment, granted to team ``granted_to`` (None: to no team)."""
        deployment = await self.fresh_deployment()
        async with self.db.transaction() as tx:
            name = (await repo.get_deployment(tx, deployment)).name
            model = await repo.create_model(tx, {"name": self.unique("model"), "deployment": name})
            if granted_to is not None:
                await repo.grant(tx, self.ids[granted_to], model.name)
        return model.id

    async def fresh_adapter(self, granted_to: str | None = "A") -> str:
        """An adapter on a new model, its name granted to team ``granted_to`` (None: to none)."""
        model_id = await self.fresh_model(granted_to=None)
        async with self.db.transaction() as tx:
            model = await repo.get_model(tx, model_id)
            adapter = await repo.create_adapter(tx, {"name": self.unique("lora"),
                                                     "base_model": model.name, "source": "/l"})
            if granted_to is not None:
                await repo.grant(tx, self.ids[granted_to], adapter.name)
        return adapter.id

    async def audit_tail(self) -> int:
        async with self.db.read() as tx:
            page = await list_audit(tx, limit=1000)
            while page.next_after is not None:
                page = await list_audit(tx, after_seq=int(page.next_after), limit=1000)
        return page.items[-1].seq if page.items else 0

    async def audit_since(self, seq: int) -> list[Any]:
        async with self.db.read() as tx:
            return list((await list_audit(tx, after_seq=seq, limit=1000)).items)


USERS = {"admin": "platform-admin", "auditor": "auditor", "billing": "billing",
         "ownerA": None, "memberA": None, "viewerA": None, "ownerB": None}
MEMBERSHIPS = {"ownerA": ("A", "owner"), "memberA": ("A", "member"), "viewerA": ("A", "viewer"),
               "ownerB": ("B", "owner")}


async def seed(db: Database) -> World:
    world = World(db, build_admin_app(db, HASHER, cipher=CIPHER))
    async with db.transaction() as tx:
        for team in ("A", "B"):
            world.ids[team] = (await repo.create_team(tx, f"team-{team}")).id
            await repo.grant(tx, world.ids[team], f"model-{team}")
        account = await repo.create_service_account(tx, world.ids["A"], "bot")
        world.ids["saA_account"] = account.id
        for role, platform_role in USERS.items():
            user = await repo.create_user(tx, f"{role}@example.com", platform_role=platform_role)
            world.ids[role] = user.id
            team = None
            if role in MEMBERSHIPS:
                team_name, team_role = MEMBERSHIPS[role]
                team = world.ids[team_name]
                await repo.set_membership(tx, team, user.id, team_role)
            secret = new_secret()
            key = await repo.create_api_key(tx, name=role, prefix=visible_prefix(secret),
                                            digest=HASHER.digest(secret), user_id=user.id,
                                            team_id=team, scopes=("inference", "admin"))
            world.secrets[role], world.actors[role] = secret, f"key:{key.id}"
            world.ids[f"{role}_key"] = key.id
        secret = new_secret()
        key = await repo.create_api_key(tx, name="bot", prefix=visible_prefix(secret),
                                        digest=HASHER.digest(secret), service_account_id=account.id,
                                        scopes=("inference", "admin"))
        world.secrets["saA"], world.actors["saA"] = secret, f"key:{key.id}"
    return world


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[World]:
    pg: Postgres | None = None
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("admin-api") / "store.db"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        dsn, reason = await probe()
        if dsn is None:
            pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 ({reason})")
        pg = Postgres(dsn)
        name = await pg.create()
        url = pg.url(name)
    await upgrade(url)
    db = Database(url)
    try:
        yield await seed(db)
    finally:
        await db.close()
        if pg is not None:
            for name in list(pg.created):
                await pg.drop(name)


# ---- the matrix -------------------------------------------------------------------------------

Make = Callable[[World], Awaitable[tuple[str, Any]]]


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    route: str  # the route template, to prove every route has a row
    make: Make  # builds the concrete path and body (with throwaway targets)
    expect: str  # one status per ROLES entry
    per_change: bool = False  # a success audits each change it reports, not exactly one entry
    audited_read: bool = False  # a GET that is audited all the same (retained bodies)

    def status(self, role: str) -> int:
        return 401 if role == "anon" else int(self.expect.split()[ROLES.index(role)])


def fixed(path: str, body: Any = None) -> Make:
    async def make(w: World) -> tuple[str, Any]:
        return path.format(**w.ids), body
    return make


async def _new_team(w: World) -> tuple[str, Any]:
    return f"{V1}/teams/{await w.fresh_team()}", None


async def _put_member(w: World) -> tuple[str, Any]:
    return f"{V1}/teams/{w.ids['A']}/members/{await w.fresh_user()}", {"role": "member"}


async def _put_existing_member(w: World) -> tuple[str, Any]:
    return (f"{V1}/teams/{w.ids['A']}/members/{await w.fresh_user(member_of=w.ids['A'])}",
            {"role": "viewer"})


async def _invite(w: World) -> tuple[str, Any]:
    user = await w.fresh_user()
    async with w.db.read() as tx:
        email = (await repo.get_user(tx, user)).email
    return f"{V1}/teams/{w.ids['A']}/invitations", {"email": email, "role": "member"}


async def _fresh_invitation(w: World) -> str:
    async with w.db.transaction() as tx:
        return (await invitations.invite(tx, w.ids["A"], await w.fresh_user(), "member",
                                         invited_by="test", expires_at=utcnow() + timedelta(days=1))).id


async def _withdraw(w: World) -> tuple[str, Any]:
    return f"{V1}/teams/{w.ids['A']}/invitations/{await _fresh_invitation(w)}/withdraw", None


def _answer(verb: str) -> Make:
    """Accept or decline someone else's invitation: it is nobody's but theirs (404)."""
    async def make(w: World) -> tuple[str, Any]:
        return f"{V1}/invitations/{await _fresh_invitation(w)}/{verb}", None
    return make


async def _delete_member(w: World) -> tuple[str, Any]:
    return f"{V1}/teams/{w.ids['A']}/members/{await w.fresh_user(member_of=w.ids['A'])}", None


def _add_member(by: str) -> Make:
    """POST a fresh user (by ``email`` or ``user_id``) into team A."""
    async def make(w: World) -> tuple[str, Any]:
        user = await w.fresh_user()
        async with w.db.read() as tx:
            email = (await repo.get_user(tx, user)).email
        named = {"email": email.upper()} if by == "email" else {"user_id": user}
        return f"{V1}/teams/{w.ids['A']}/members", {**named, "role": "member"}
    return make


async def _patch_user(w: World) -> tuple[str, Any]:
    return f"{V1}/users/{await w.fresh_user()}", {"disabled": True}


async def _link_user(w: World) -> tuple[str, Any]:
    return (f"{V1}/users/{await w.fresh_user()}/sign-in-links",
            {"issuer": "https://idp.example.com", "subject": w.unique("sub")})


async def _user_link(w: World) -> tuple[str, Any]:
    user = await w.fresh_user()
    async with w.db.transaction() as tx:
        link = await sign_in_links.create_link(tx, "https://idp.example.com", w.unique("sub"), user,
                                               method="admin", linked_by="test")
    return f"{V1}/users/{user}/sign-in-links/{link.id}", None


def _user_path() -> Make:
    async def make(w: World) -> tuple[str, Any]:
        return f"{V1}/users/{await w.fresh_user()}", None
    return make


async def _create_team(w: World) -> tuple[str, Any]:
    return f"{V1}/teams", {"name": w.unique("team"), "weight": 2}


async def _create_user(w: World) -> tuple[str, Any]:
    return f"{V1}/users", {"email": f"{w.unique('new')}@example.com", "display_name": "New"}


async def _create_sa(w: World) -> tuple[str, Any]:
    return f"{V1}/service-accounts", {"team_id": w.ids["A"], "name": w.unique("sa")}


async def _revoke(w: World) -> tuple[str, Any]:
    return f"{V1}/keys/{(await w.fresh_key())[0]}/revoke", None


async def _rotate(w: World) -> tuple[str, Any]:
    return f"{V1}/keys/{(await w.fresh_key())[0]}/rotate", {"overlap_s": 60}


async def _delete_grant(w: World) -> tuple[str, Any]:
    return f"{V1}/grants/{w.ids['A']}/{await w.fresh_grant()}", None


async def _put_grant(w: World) -> tuple[str, Any]:
    return f"{V1}/grants/{w.ids['A']}/{w.unique('org/model')}", None


async def _key_for_member(w: World) -> tuple[str, Any]:
    return f"{V1}/keys", {"name": "k", "team_id": w.ids["A"], "user_id": w.ids["memberA"],
                          "scopes": ["inference"], "allowed_models": ["model-A"]}


async def _key_for_sa(w: World) -> tuple[str, Any]:
    return f"{V1}/keys", {"name": "k", "service_account_id": w.ids["saA_account"],
                          "scopes": ["inference", "batch"]}


async def _patch_retention(w: World) -> tuple[str, Any]:
    return f"{V1}/teams/{await w.fresh_team()}", {"retention": "store", "retention_days": 30}


async def _patch_team(w: World) -> tuple[str, Any]:
    return f"{V1}/teams/{await w.fresh_team()}", {"weight": 7}


async def _set_limit(w: World) -> tuple[str, Any]:
    return f"{V1}/limits", {"scope": "team_model", "team_id": w.ids["A"], "model": w.unique("m"),
                            "rpm": 60, "tpm": 10_000}


async def _set_budget(w: World) -> tuple[str, Any]:
    return f"{V1}/budgets", {"scope": "key", "key_id": (await w.fresh_key())[0], "amount": "12.50",
                             "currency": "USD", "period": "daily", "mode": "soft"}


def _catalog(kind: str, suffix: str = "", body: Any = None, **options: Any) -> Make:
    """A path to a fresh provider, deployment or model (``options`` for its maker)."""
    async def make(w: World) -> tuple[str, Any]:
        fresh = {"providers": w.fresh_provider, "deployments": w.fresh_deployment,
                 "models": w.fresh_model, "adapters": w.fresh_adapter}[kind]
        return f"{V1}/{kind}/{await fresh(**options)}{suffix}", body
    return make


def _replica(action: str = "") -> Make:
    """A path to a fresh deployment's replicas, or to its first replica's ``action``."""
    async def make(w: World) -> tuple[str, Any]:
        deployment_id = await w.fresh_deployment()
        async with w.db.transaction() as tx:
            record = await repo.get_deployment(tx, deployment_id)
            if action == "undrain":  # undraining what is not drained changes (and audits) nothing
                await drains.set_drained(tx, record, f"{record.name}-0", True, by="matrix")
        name = record.name
        tail = f"/{name}-0/{action}" if action else ""
        return f"{V1}/deployments/{deployment_id}/replicas{tail}", None
    return make


async def _create_provider(w: World) -> tuple[str, Any]:
    return f"{V1}/providers", {"name": w.unique("prov"), "base_url": "https://x.example/v1",
                               "api_key": "sk-upstream-secret"}


async def _create_deployment(w: World) -> tuple[str, Any]:
    return f"{V1}/deployments", {"name": w.unique("dep"), "engine": "openai", "served_model": "m",
                                 "replicas": [{"url": "http://10.0.0.1:8000/v1"}]}


async def _create_model(w: World) -> tuple[str, Any]:
    async with w.db.read() as tx:
        deployment = (await repo.get_deployment(tx, await w.fresh_deployment())).name
    return f"{V1}/models", {"name": w.unique("model"), "deployment": deployment, "aliases": [
        w.unique("alias")]}


async def _create_adapter(w: World) -> tuple[str, Any]:
    async with w.db.read() as tx:
        model = (await repo.get_model(tx, await w.fresh_model())).name
    return f"{V1}/adapters", {"name": w.unique("lora"), "base_model": model, "source": "/loras/x"}


async def _scheduled_price(w: World) -> tuple[str, Any]:
    """A fresh model's price still to come (one that has started cannot be deleted)."""
    model_id = await w.fresh_model()
    async with w.db.transaction() as tx:
        price = await repo.add_price(tx, model_id, PriceSpec(input_per_million=Decimal(1)),
                                     effective_from=utcnow() + timedelta(days=30))
    return f"{V1}/models/{model_id}/prices/{price.id}", None


async def _apply(w: World) -> tuple[str, Any]:
    """A platform file with a new deployment and model (earlier file-managed rows then go)."""
    name = w.unique("applied")
    text = (f"deployments:\n  - {{name: {name}, engine: simulator, profile: test-fast, "
            f"served_model: m}}\nmodels:\n  - {{name: {name}, deployment: {name}}}\n")
    return f"{V1}/apply?dry_run=false", {"file": text, "source": "matrix.yaml"}


GUARD_RULES = [{"entities": ["card", "iban"], "action": "block", "applies_to": ["input"]}]


async def _fresh_policy(w: World, *, attached: bool = False) -> tuple[str, str | None]:
    """A new guardrail policy (and its attachment to team A): (its name, the attachment's id)."""
    name = w.unique("policy")
    async with w.db.transaction() as tx:
        await guardrails.create_policy(tx, name, GUARD_RULES)
        if not attached:
            return name, None
        attachment, _ = await guardrails.attach(tx, name, "team", team_id=w.ids["A"])
    return name, attachment.id


def _policy(body: Any = None) -> Make:
    async def make(w: World) -> tuple[str, Any]:
        return f"{V1}/guardrails/policies/{(await _fresh_policy(w))[0]}", body
    return make


async def _new_policy(w: World) -> tuple[str, Any]:
    return f"{V1}/guardrails/policies", {"name": w.unique("policy"), "rules": GUARD_RULES}


async def _put_new_policy(w: World) -> tuple[str, Any]:
    return f"{V1}/guardrails/policies/{w.unique('policy')}", {"rules": GUARD_RULES}


async def _attach(w: World) -> tuple[str, Any]:
    return f"{V1}/guardrails/attachments", {"policy": (await _fresh_policy(w))[0],
                                            "scope": "team", "team_id": w.ids["A"]}


async def _attachment(w: World) -> tuple[str, Any]:
    return f"{V1}/guardrails/attachments/{(await _fresh_policy(w, attached=True))[1]}", None


def _rule(kind: str, key_of: str | None = None) -> Make:
    async def make(w: World) -> tuple[str, Any]:
        fresh = w.fresh_limit if kind == "limits" else w.fresh_budget
        return f"{V1}/{kind}/{await fresh(key_of)}", None
    return make


#                                                     admin aud bill ownA memA viewA ownB saA
CASES = [
    Case("me", "GET", "/me", fixed(f"{V1}/me"), "200 200 200 200 200 200 200 200"),
    Case("teams.list", "GET", "/teams", fixed(f"{V1}/teams"), "200 200 200 200 200 200 200 200"),
    Case("teams.create", "POST", "/teams", _create_team, "201 403 403 403 403 403 403 403"),
    Case("teams.get A", "GET", "/teams/{team_id}", fixed(V1 + "/teams/{A}"),
         "200 200 200 200 200 200 404 200"),
    Case("teams.get B", "GET", "/teams/{team_id}", fixed(V1 + "/teams/{B}"),
         "200 200 200 404 404 404 200 404"),
    Case("teams.delete", "DELETE", "/teams/{team_id}", _new_team, "204 403 403 403 403 403 403 403"),
    Case("teams.patch", "PATCH", "/teams/{team_id}", _patch_team, "200 403 403 403 403 403 403 403"),
    Case("teams.patch retention", "PATCH", "/teams/{team_id}", _patch_retention,
         "200 403 403 403 403 403 403 403"),
    Case("members.list", "GET", "/teams/{team_id}/members", fixed(V1 + "/teams/{A}/members"),
         "200 200 403 200 403 403 404 403"),
    # Only platform admins put people in a team directly; owners invite, and change the role of
    # those who are members already.
    Case("members.put", "PUT", "/teams/{team_id}/members/{user_id}", _put_member,
         "200 403 403 403 403 403 404 403"),
    Case("members.put a member's role", "PUT", "/teams/{team_id}/members/{user_id}",
         _put_existing_member, "200 403 403 200 403 403 404 403"),
    Case("members.delete", "DELETE", "/teams/{team_id}/members/{user_id}", _delete_member,
         "204 403 403 204 403 403 404 403"),
    Case("members.add by email", "POST", "/teams/{team_id}/members", _add_member("email"),
         "201 403 403 403 403 403 404 403"),
    Case("members.add by id", "POST", "/teams/{team_id}/members", _add_member("user_id"),
         "201 403 403 403 403 403 404 403"),
    # Owners invite people by email, as they cannot read users (an unknown email is 404 to them).
    Case("invitations.create", "POST", "/teams/{team_id}/invitations", _invite,
         "201 403 403 201 403 403 404 403"),
    Case("invitations.list team", "GET", "/teams/{team_id}/invitations",
         fixed(V1 + "/teams/{A}/invitations"), "200 200 403 200 403 403 404 403"),
    Case("invitations.withdraw", "POST", "/teams/{team_id}/invitations/{invitation_id}/withdraw",
         _withdraw, "200 403 403 200 403 403 404 403"),
    Case("invitations.mine", "GET", "/invitations", fixed(f"{V1}/invitations"),
         "200 200 200 200 200 200 200 200"),
    Case("invitations.accept another's", "POST", "/invitations/{invitation_id}/accept",
         _answer("accept"), "404 404 404 404 404 404 404 404"),
    Case("invitations.decline another's", "POST", "/invitations/{invitation_id}/decline",
         _answer("decline"), "404 404 404 404 404 404 404 404"),
    # ownerA is team A's only owner, and ownerB team B's: they stay (409), whoever asks.
    Case("members.put demotes the last owner", "PUT", "/teams/{team_id}/members/{user_id}",
         fixed(V1 + "/teams/{A}/members/{ownerA}", {"role": "member"}),
         "409 403 403 409 403 403 404 403"),
    Case("members.delete the last owner", "DELETE", "/teams/{team_id}/members/{user_id}",
         fixed(V1 + "/teams/{A}/members/{ownerA}"), "409 403 403 409 403 403 404 403"),
    Case("users.list", "GET", "/users", fixed(f"{V1}/users"), "200 200 403 403 403 403 403 403"),
    Case("users.create", "POST", "/users", _create_user, "201 403 403 403 403 403 403 403"),
    Case("users.get", "GET", "/users/{user_id}", fixed(V1 + "/users/{memberA}"),
         "200 200 403 403 403 403 403 403"),
    Case("users.get outside every team", "GET", "/users/{user_id}",
         _user_path(), "200 200 403 403 403 403 403 403"),
    Case("users.patch", "PATCH", "/users/{user_id}", _patch_user, "200 403 403 403 403 403 403 403"),
    Case("users.links list", "GET", "/users/{user_id}/sign-in-links",
         fixed(V1 + "/users/{memberA}/sign-in-links"), "200 200 403 403 403 403 403 403"),
    Case("users.links create", "POST", "/users/{user_id}/sign-in-links", _link_user,
         "201 403 403 403 403 403 403 403"),
    Case("users.links delete", "DELETE", "/users/{user_id}/sign-in-links/{link_id}", _user_link,
         "204 403 403 403 403 403 403 403"),
    Case("users.patch disables the last owner", "PATCH", "/users/{user_id}",
         fixed(V1 + "/users/{ownerB}", {"disabled": True}), "409 403 403 403 403 403 403 403"),
    Case("sa.list", "GET", "/service-accounts", fixed(V1 + "/service-accounts?team_id={A}"),
         "200 200 403 200 403 403 404 403"),
    Case("sa.create", "POST", "/service-accounts", _create_sa, "201 403 403 201 403 403 404 403"),
    Case("sa.get", "GET", "/service-accounts/{account_id}",
         fixed(V1 + "/service-accounts/{saA_account}"), "200 200 403 200 403 403 404 403"),
    Case("keys.list", "GET", "/keys", fixed(V1 + "/keys?team_id={A}"),
         "200 200 403 200 200 200 404 200"),
    # A key speaks for its owner: people create keys for themselves (or a platform admin for
    # anyone); owners also for their team's service accounts.
    Case("keys.create user", "POST", "/keys", _key_for_member, "201 403 403 403 201 403 404 403"),
    Case("keys.create sa", "POST", "/keys", _key_for_sa, "201 403 403 201 403 403 404 403"),
    Case("keys.get", "GET", "/keys/{key_id}", fixed(V1 + "/keys/{memberA_key}"),
         "200 200 403 200 200 404 404 404"),
    Case("keys.revoke", "POST", "/keys/{key_id}/revoke", _revoke, "200 403 403 200 200 403 404 404"),
    # Rotating hands out a new secret with the key's power: the same rule as creating it.
    # Owners may still revoke their members' keys.
    Case("keys.rotate", "POST", "/keys/{key_id}/rotate", _rotate, "201 403 403 403 201 403 404 404"),
    Case("grants.list", "GET", "/grants", fixed(V1 + "/grants?team_id={A}"),
         "200 200 403 200 403 403 404 403"),
    Case("grants.put", "PUT", "/grants/{team_id}/{model}", _put_grant,
         "200 403 403 403 403 403 403 403"),
    Case("grants.delete", "DELETE", "/grants/{team_id}/{model}", _delete_grant,
         "204 403 403 403 403 403 403 403"),
    Case("audit.list", "GET", "/audit", fixed(f"{V1}/audit"), "200 200 403 403 403 403 403 403"),
    # Admission rules: platform admins write; team owners and members only read their team's.
    Case("limits.list A", "GET", "/limits", fixed(V1 + "/limits?team_id={A}"),
         "200 200 200 200 200 403 404 200"),
    Case("limits.list", "GET", "/limits", fixed(V1 + "/limits"), "200 200 200 200 200 403 200 200"),
    Case("limits.set", "POST", "/limits", _set_limit, "201 403 403 403 403 403 403 403"),
    Case("limits.get team", "GET", "/limits/{limit_id}", _rule("limits"),
         "200 200 200 200 200 403 404 200"),
    Case("limits.get key", "GET", "/limits/{limit_id}", _rule("limits", "memberA"),
         "200 200 200 200 200 403 404 404"),
    Case("limits.get other's key", "GET", "/limits/{limit_id}", _rule("limits", "ownerA"),
         "200 200 200 200 404 403 404 404"),
    Case("limits.delete", "DELETE", "/limits/{limit_id}", _rule("limits"),
         "204 403 403 403 403 403 403 403"),
    Case("budgets.list A", "GET", "/budgets", fixed(V1 + "/budgets?team_id={A}"),
         "200 200 200 200 200 403 404 200"),
    Case("budgets.list", "GET", "/budgets", fixed(V1 + "/budgets"), "200 200 200 200 200 403 200 200"),
    Case("budgets.set", "POST", "/budgets", _set_budget, "201 403 403 403 403 403 403 403"),
    Case("budgets.get team", "GET", "/budgets/{budget_id}", _rule("budgets"),
         "200 200 200 200 200 403 404 200"),
    Case("budgets.get key", "GET", "/budgets/{budget_id}", _rule("budgets", "memberA"),
         "200 200 200 200 200 403 404 404"),
    Case("budgets.delete", "DELETE", "/budgets/{budget_id}", _rule("budgets", "memberA"),
         "204 403 403 403 403 403 403 403"),
    # The catalog: platform roles read it, platform admins change it; team roles read only the
    # models granted to their teams (others 404), and no provider or deployment.
    Case("providers.list", "GET", "/providers", fixed(f"{V1}/providers"),
         "200 200 200 403 403 403 403 403"),
    Case("providers.create", "POST", "/providers", _create_provider, "201 403 403 403 403 403 403 403"),
    Case("providers.get", "GET", "/providers/{provider_id}", _catalog("providers"),
         "200 200 200 404 404 404 404 404"),
    Case("providers.patch", "PATCH", "/providers/{provider_id}",
         _catalog("providers", body={"api_key_env": "UPSTREAM_KEY"}), "200 403 403 403 403 403 403 403"),
    Case("providers.delete", "DELETE", "/providers/{provider_id}", _catalog("providers"),
         "204 403 403 403 403 403 403 403"),
    Case("providers.set_key", "PUT", "/providers/{provider_id}/api-key",
         _catalog("providers", "/api-key", {"api_key": "sk-upstream-secret-2"}),
         "200 403 403 403 403 403 403 403"),
    Case("providers.clear_key", "DELETE", "/providers/{provider_id}/api-key",
         _catalog("providers", "/api-key", with_key=True), "204 403 403 403 403 403 403 403"),
    Case("deployments.list", "GET", "/deployments", fixed(f"{V1}/deployments"),
         "200 200 200 403 403 403 403 403"),
    Case("deployments.create", "POST", "/deployments", _create_deployment,
         "201 403 403 403 403 403 403 403"),
    Case("deployments.get", "GET", "/deployments/{deployment_id}", _catalog("deployments"),
         "200 200 200 404 404 404 404 404"),
    Case("deployments.patch", "PATCH", "/deployments/{deployment_id}",
         _catalog("deployments", body={"replicas": 2, "capacity": 8}), "200 403 403 403 403 403 403 403"),
    Case("deployments.delete", "DELETE", "/deployments/{deployment_id}", _catalog("deployments"),
         "204 403 403 403 403 403 403 403"),
    Case("deployments.replicas", "GET", "/deployments/{deployment_id}/replicas", _replica(),
         "200 200 200 404 404 404 404 404"),
    Case("deployments.drain", "POST", "/deployments/{deployment_id}/replicas/{replica}/drain",
         _replica("drain"), "200 403 403 403 403 403 403 403"),
    Case("deployments.undrain", "POST", "/deployments/{deployment_id}/replicas/{replica}/undrain",
         _replica("undrain"), "200 403 403 403 403 403 403 403"),
    Case("models.list", "GET", "/models", fixed(f"{V1}/models"), "200 200 200 200 200 200 200 200"),
    Case("models.create", "POST", "/models", _create_model, "201 403 403 403 403 403 403 403"),
    Case("models.get granted to A", "GET", "/models/{model_id}", _catalog("models"),
         "200 200 200 200 200 200 404 200"),
    Case("models.get granted to B", "GET", "/models/{model_id}", _catalog("models", granted_to="B"),
         "200 200 200 404 404 404 200 404"),
    Case("models.get granted to none", "GET", "/models/{model_id}", _catalog("models", granted_to=None),
         "200 200 200 404 404 404 404 404"),
    Case("models.patch", "PATCH", "/models/{model_id}",
         _catalog("models", body={"max_output_tokens": 512, "type": "chat"}),
         "200 403 403 403 403 403 403 403"),
    Case("models.delete", "DELETE", "/models/{model_id}", _catalog("models"),
         "204 403 403 403 403 403 403 403"),
    # A model's prices: read with the model, scheduled and deleted by platform admins only.
    Case("prices.list granted to A", "GET", "/models/{model_id}/prices", _catalog("models", "/prices"),
         "200 200 200 200 200 200 404 200"),
    Case("prices.list granted to none", "GET", "/models/{model_id}/prices",
         _catalog("models", "/prices", granted_to=None), "200 200 200 404 404 404 404 404"),
    Case("prices.add", "POST", "/models/{model_id}/prices",
         _catalog("models", "/prices", {"effective_from": "2999-01-01T00:00:00Z",
                                        "input_per_million": "0.5", "output_per_million": "1.5"}),
         "201 403 403 403 403 403 403 403"),
    Case("prices.delete", "DELETE", "/models/{model_id}/prices/{price_id}", _scheduled_price,
         "204 403 403 403 403 403 403 403"),
    # Adapters: as models (team roles read the ones granted to their teams; admins change them).
    Case("adapters.list", "GET", "/adapters", fixed(f"{V1}/adapters"),
         "200 200 200 200 200 200 200 200"),
    Case("adapters.create", "POST", "/adapters", _create_adapter, "201 403 403 403 403 403 403 403"),
    Case("adapters.get granted to A", "GET", "/adapters/{adapter_id}", _catalog("adapters"),
         "200 200 200 200 200 200 404 200"),
    Case("adapters.get granted to none", "GET", "/adapters/{adapter_id}",
         _catalog("adapters", granted_to=None), "200 200 200 404 404 404 404 404"),
    Case("adapters.patch", "PATCH", "/adapters/{adapter_id}",
         _catalog("adapters", body={"description": "tone"}), "200 403 403 403 403 403 403 403"),
    Case("adapters.delete", "DELETE", "/adapters/{adapter_id}", _catalog("adapters"),
         "204 403 403 403 403 403 403 403"),
    # Config as code changes the catalog: platform admins only (catalog:write).
    Case("apply", "POST", "/apply", _apply, "200 403 403 403 403 403 403 403", per_change=True),
    # Usage reports: platform roles see everything, owners their team, members and viewers the
    # keys they own (a service account's key owns none: an empty report); a team or key filter
    # outside that is 404.
    Case("usage", "GET", "/usage", fixed(f"{V1}/usage?group_by=team,key"),
         "200 200 200 200 200 200 200 200"),
    Case("usage team A", "GET", "/usage", fixed(V1 + "/usage?team_id={A}&format=csv"),
         "200 200 200 200 200 200 404 200"),
    Case("usage of memberA's key", "GET", "/usage", fixed(V1 + "/usage?key_id={memberA_key}"),
         "200 200 200 200 200 404 404 404"),
    Case("usage.csv", "GET", "/usage.csv",
         fixed(V1 + "/usage.csv?team_id={A}&granularity=hour&group_by=model"),
         "200 200 200 200 200 200 404 200"),
    # Chargeback: the same reach (platform roles every line; owners their team's lines; members
    # and viewers none, as a share is the whole team's); a team outside it is 404.
    Case("chargeback", "GET", "/chargeback", fixed(f"{V1}/chargeback?view=chargeback"),
         "200 200 200 200 200 200 200 200"),
    Case("chargeback.csv team A", "GET", "/chargeback.csv",
         fixed(V1 + "/chargeback.csv?team_id={A}&granularity=day"),
         "200 200 200 200 200 200 404 200"),
    # Usage records one by one (the auditors' query by guardrail outcome): the reach of /usage.
    Case("usage.records", "GET", "/usage/records",
         fixed(f"{V1}/usage/records?guardrail_action=block&entity=card"),
         "200 200 200 200 200 200 200 200"),
    Case("usage.records team A", "GET", "/usage/records",
         fixed(V1 + "/usage/records?team_id={A}&policy=pii"), "200 200 200 200 200 200 404 200"),
    # Guardrail policies apply to every team alike: platform admins change them, auditors read
    # them; no team role (or billing) sees them.
    Case("guardrails.policies.list", "GET", "/guardrails/policies",
         fixed(f"{V1}/guardrails/policies"), "200 200 403 403 403 403 403 403"),
    Case("guardrails.policies.create", "POST", "/guardrails/policies", _new_policy,
         "201 403 403 403 403 403 403 403"),
    Case("guardrails.policies.get", "GET", "/guardrails/policies/{name}", _policy(),
         "200 200 403 403 403 403 403 403"),
    Case("guardrails.policies.put new", "PUT", "/guardrails/policies/{name}", _put_new_policy,
         "201 403 403 403 403 403 403 403"),
    Case("guardrails.policies.put change", "PUT", "/guardrails/policies/{name}",
         _policy({"rules": GUARD_RULES, "description": "changed"}),
         "200 403 403 403 403 403 403 403"),
    Case("guardrails.policies.delete", "DELETE", "/guardrails/policies/{name}", _policy(),
         "204 403 403 403 403 403 403 403"),
    Case("guardrails.attachments.list", "GET", "/guardrails/attachments",
         fixed(f"{V1}/guardrails/attachments"), "200 200 403 403 403 403 403 403"),
    Case("guardrails.attach", "POST", "/guardrails/attachments", _attach,
         "201 403 403 403 403 403 403 403"),
    Case("guardrails.detach", "DELETE", "/guardrails/attachments/{attachment_id}", _attachment,
         "204 403 403 403 403 403 403 403"),
    # Retained bodies (the compliance export): platform admins and auditors only, every read
    # audited; no team role (not even the team's owner) and not billing.
    Case("retained-bodies", "GET", "/retained-bodies", fixed(V1 + "/retained-bodies?team_id={A}"),
         "200 200 403 403 403 403 403 403", audited_read=True),
]


@pytest.mark.parametrize("role", (*ROLES, "anon"))
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_route_by_role(world: World, case: Case, role: str) -> None:
    path, body = await case.make(world)
    tail = await world.audit_tail()
    reply = await call(world.app, case.method, path, body, secret=world.secrets.get(role))
    expected = case.status(role)
    assert reply.status == expected, (case.name, role, reply.status, reply.body[:300])
    entries = await world.audit_since(tail)
    if expected >= 400:
        error = reply.json()["error"]
        assert set(error) >= {"message", "type", "param", "code"}
        assert entries == []
        if expected == 401:
            assert reply.headers.get("www-authenticate") == "Bearer"
    elif case.method == "GET" and not case.audited_read:
        assert entries == []
    else:
        changes = len(reply.json()["changes"]) if case.per_change else 1
        assert len(entries) == changes >= 1, entries
        for entry in entries:
            assert entry.actor == world.actors[role] and entry.source == CLIENT
            assert entry.action.split(".")[0] in {
                "team", "member", "user", "service_account", "key", "grant", "limit", "budget",
                "provider", "deployment", "model", "adapter", "invitation", "guardrail_policy",
                "guardrail_attachment", "retained_bodies"}
            assert "secret" not in orjson.dumps([entry.before, entry.after]).decode()


def _api_routes() -> set[tuple[str, str]]:
    """(method, path under V1) of every route the app serves (its routers: ``app.ROUTERS``)."""
    return {(method, route.path.replace("{model:path}", "{model}"))
            for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)
            for method in route.methods}


async def test_every_route_has_a_matrix_row() -> None:
    assert len(_api_routes()) == 86
    assert _api_routes() == {(c.method, c.route) for c in CASES}


# ---- behaviour beyond the matrix --------------------------------------------------------------

async def test_openapi_lists_every_route_without_auth(world: World) -> None:
    reply = await call(world.app, "GET", f"{V1}/openapi.json")
    assert reply.status == 200
    listed = {(method.upper(), path.removeprefix(V1))
              for path, item in reply.json()["paths"].items() for method in item}
    assert listed == _api_routes()


async def test_lists_are_scoped_to_the_callers_teams(world: World) -> None:
    names = lambda r: {t["name"] for t in r.json()["data"]}  # noqa: E731
    assert names(await call(world.app, "GET", f"{V1}/teams", secret=world.secrets["ownerB"])) == {"team-B"}
    everything = await call(world.app, "GET", f"{V1}/teams?limit=1000", secret=world.secrets["billing"])
    assert {"team-A", "team-B"} <= names(everything)
    keys = await call(world.app, "GET", f"{V1}/keys?team_id={world.ids['A']}",
                      secret=world.secrets["viewerA"])
    assert {k["user_id"] for k in keys.json()["data"]} == {world.ids["viewerA"]}
    owner = await call(world.app, "GET", f"{V1}/keys?team_id={world.ids['A']}&limit=1000",
                       secret=world.secrets["ownerA"])
    assert {world.ids["memberA"], world.ids["viewerA"]} <= {k["user_id"] for k in owner.json()["data"]}
    grants = await call(world.app, "GET", f"{V1}/grants", secret=world.secrets["ownerA"])
    assert {g["team_id"] for g in grants.json()["data"]} == {world.ids["A"]}


async def test_pagination_follows_next_after(world: World) -> None:
    seen: list[str] = []
    after = ""
    while True:
        reply = await call(world.app, "GET", f"{V1}/users?limit=2{after}", secret=world.secrets["admin"])
        page = reply.json()
        assert len(page["data"]) <= 2
        seen += [u["email"] for u in page["data"]]
        if page["next_after"] is None:
            break
        after = f"&after={page['next_after']}"
    assert seen == sorted(seen) and len(seen) == len(set(seen)) >= len(USERS)


@pytest.mark.parametrize(("method", "path", "body", "param"), [
    ("POST", "/teams", {"name": "x", "weight": 0}, "weight"),
    ("POST", "/teams", {"weight": 2}, "name"),
    ("POST", "/teams", {"name": "x", "colour": "red"}, "colour"),
    ("POST", "/users", {"email": "not-an-email"}, "email"),
    ("POST", "/users", {"email": "a@b.c", "platform_role": "god"}, "platform_role"),
    ("PATCH", "/users/{memberA}", {"disabled": None}, "disabled"),
    ("PUT", "/teams/{A}/members/{memberA}", {"role": "king"}, "role"),
    ("POST", "/teams/{A}/members", {"email": "not-an-email", "role": "member"}, "email"),
    ("POST", "/teams/{A}/members", {"role": "member"}, "user_id"),
    ("POST", "/teams/{A}/members", {"user_id": "{memberA}", "email": "a@b.c", "role": "member"},
     "email"),
    ("POST", "/teams/{A}/members", {"user_id": "{memberA}", "role": "boss"}, "role"),
    ("POST", "/keys", {"name": "k", "team_id": "{A}", "scopes": ["root"]}, "scopes.0"),
    ("POST", "/keys", {"name": "k", "team_id": "{A}", "scopes": []}, "scopes"),
    ("POST", "/keys", {"name": "k", "scopes": ["inference"], "expires_at": "2030-01-01T00:00:00"},
     "expires_at"),
    ("POST", "/keys", {"name": "k", "scopes": ["inference"], "expires_at": "2001-01-01T00:00:00Z"},
     "expires_at"),
    ("POST", "/keys", {"name": "k", "scopes": ["inference"], "user_id": "{memberA}",
                       "service_account_id": "{saA_account}"}, "service_account_id"),
    ("POST", "/keys", {"name": "k", "team_id": "{B}", "user_id": "{memberA}", "scopes": ["inference"]},
     "user_id"),
    ("POST", "/keys/{memberA_key}/rotate", {"overlap_s": -1}, "overlap_s"),
    ("GET", "/teams?limit=0", None, "limit"),
    ("GET", "/audit?after=abc", None, "after"),
    ("GET", "/audit?since=yesterday", None, "since"),
])
async def test_validation_errors_name_the_field(world: World, method: str, path: str, body: Any,
                                                param: str) -> None:
    if body is not None:
        body = {k: v.format(**world.ids) if isinstance(v, str) else v for k, v in body.items()}
    reply = await call(world.app, method, V1 + path.format(**world.ids), body,
                       secret=world.secrets["admin"])
    assert reply.status == 422, reply.body
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error


async def test_malformed_json_is_422(world: World) -> None:
    reply = await call(world.app, "POST", f"{V1}/teams", raw=b"{nope", secret=world.secrets["admin"])
    assert reply.status == 422 and reply.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/teams/team_nope", None),
    ("DELETE", "/teams/team_nope", None),
    ("GET", "/teams/team_nope/members", None),
    ("PUT", "/teams/team_nope/members/{memberA}", {"role": "member"}),
    ("PUT", "/teams/{A}/members/usr_nope", {"role": "member"}),
    ("DELETE", "/teams/{A}/members/usr_nope", None),
    ("POST", "/teams/{A}/members", {"user_id": "usr_nope", "role": "member"}),
    ("POST", "/teams/{A}/members", {"email": "nobody@nowhere.example", "role": "member"}),
    ("POST", "/teams/team_nope/members", {"user_id": "{memberA}", "role": "member"}),
    ("GET", "/users/usr_nope", None),
    ("PATCH", "/users/usr_nope", {"disabled": True}),
    ("GET", "/service-accounts/sa_nope", None),
    ("GET", "/service-accounts?team_id=team_nope", None),
    ("POST", "/service-accounts", {"team_id": "team_nope", "name": "x"}),
    ("GET", "/keys/key_nope", None),
    ("POST", "/keys/key_nope/revoke", None),
    ("POST", "/keys/key_nope/rotate", {"overlap_s": 0}),
    ("POST", "/keys", {"name": "k", "user_id": "usr_nope", "team_id": "{A}", "scopes": ["inference"]}),
    ("POST", "/keys", {"name": "k", "service_account_id": "sa_nope", "scopes": ["inference"]}),
    ("GET", "/grants?team_id=team_nope", None),
    ("PUT", "/grants/team_nope/m", None),
    ("DELETE", "/grants/{A}/no-such-model", None),
    ("GET", "/no-such-route", None),
])
async def test_unknown_ids_are_404(world: World, method: str, path: str, body: Any) -> None:
    tail = await world.audit_tail()
    reply = await call(world.app, method, V1 + path.format(**world.ids), body,
                       secret=world.secrets["admin"])
    assert reply.status == 404, reply.body
    assert reply.json()["error"]["code"] == "not_found"
    assert await world.audit_since(tail) == []


async def test_owners_invite_by_email_and_people_join_by_accepting(world: World) -> None:
    owner, team = world.secrets["ownerA"], world.ids["A"]
    user = await world.fresh_user(member_of=world.ids["B"])
    secret = new_secret()
    async with world.db.transaction() as tx:
        email = (await repo.get_user(tx, user)).email
        invitee = await repo.create_api_key(tx, name="invitee", prefix=visible_prefix(secret),
                                  digest=HASHER.digest(secret), user_id=user,
                                  team_id=world.ids["B"], scopes=("admin",))
    members = f"{V1}/teams/{team}/members"
    refused = await call(world.app, "POST", members, {"email": email, "role": "owner"}, secret=owner)
    assert refused.status == 403 and "invite them" in refused.json()["error"]["message"]
    path = f"{V1}/teams/{team}/invitations"
    invited = await call(world.app, "POST", path, {"email": email.upper(), "role": "viewer"},
                         secret=owner)
    assert invited.status == 201, invited.body
    offer = invited.json()
    assert (offer["user_id"], offer["role"], offer["state"], offer["team_name"]) == (
        user, "viewer", "pending", "team-A")
    renewed = await call(world.app, "POST", path, {"email": email, "role": "member"}, secret=owner)
    assert renewed.json()["id"] == offer["id"] and renewed.json()["role"] == "member"
    assert (await call(world.app, "GET", members, secret=owner)).json()["data"] == [
        m for m in (await call(world.app, "GET", members, secret=owner)).json()["data"]
        if m["user_id"] != user]  # not a member until they accept
    mine = await call(world.app, "GET", f"{V1}/invitations", secret=secret)
    assert [i["id"] for i in mine.json()["data"]] == [offer["id"]]
    # Nobody else can answer it for them, the team's owner included.
    for other in ("ownerA", "admin", "memberA"):
        taken = await call(world.app, "POST", f"{V1}/invitations/{offer['id']}/accept",
                           secret=world.secrets[other])
        assert taken.status == 404
    accepted = await call(world.app, "POST", f"{V1}/invitations/{offer['id']}/accept", secret=secret)
    assert accepted.status == 200 and accepted.json()["state"] == "accepted"
    async with world.db.read() as tx:
        assert (await q.get_membership(tx, team, user)).role == "member"
    again = await call(world.app, "POST", f"{V1}/invitations/{offer['id']}/accept", secret=secret)
    assert again.status == 409
    # Once in, the owner manages their role.
    assert (await call(world.app, "PUT", f"{members}/{user}", {"role": "viewer"},
                       secret=owner)).status == 200
    unknown = await call(world.app, "POST", path, {"email": f"{world.unique('nobody')}@example.com",
                                                   "role": "member"}, secret=owner)
    assert unknown.status == 404 and "No user has this email" in unknown.json()["error"]["message"]
    # The owner of another team learns nothing: the same 404 (for the team) either way.
    other = world.secrets["ownerB"]
    known = await call(world.app, "POST", path, {"email": email, "role": "member"}, secret=other)
    unknown = await call(world.app, "POST", path, {"email": "nobody@example.com", "role": "member"},
                         secret=other)
    assert known.status == unknown.status == 404 and known.body == unknown.body
    async with world.db.read() as tx:
        entries = (await list_audit(tx, target_id=offer["id"])).items
    assert [(e.action, e.actor) for e in entries] == [
        ("invitation.create", world.actors["ownerA"])] * 2 + [("invitation.accept", f"key:{invitee.id}")]


async def test_invitations_can_be_declined_withdrawn_and_expire(world: World) -> None:
    owner, team = world.secrets["ownerA"], world.ids["A"]
    user = await world.fresh_user(member_of=world.ids["B"])
    secret = new_secret()
    async with world.db.transaction() as tx:
        await repo.create_api_key(tx, name="invitee", prefix=visible_prefix(secret),
                                  digest=HASHER.digest(secret), user_id=user,
                                  team_id=world.ids["B"], scopes=("admin",))
    path = f"{V1}/teams/{team}/invitations"
    first = (await call(world.app, "POST", path, {"user_id": user, "role": "owner"}, secret=owner)).json()
    declined = await call(world.app, "POST", f"{V1}/invitations/{first['id']}/decline", secret=secret)
    assert declined.status == 200 and declined.json()["state"] == "declined"
    second = (await call(world.app, "POST", path, {"user_id": user, "role": "owner"}, secret=owner)).json()
    assert second["id"] != first["id"]
    withdrawn = await call(world.app, "POST", f"{path}/{second['id']}/withdraw", secret=owner)
    assert withdrawn.status == 200 and withdrawn.json()["state"] == "withdrawn"
    late = await call(world.app, "POST", f"{V1}/invitations/{second['id']}/accept", secret=secret)
    assert late.status == 409
    async with world.db.transaction() as tx:
        expired = await invitations.invite(tx, team, user, "owner", invited_by="test",
                                           expires_at=utcnow() - timedelta(seconds=1))
    assert (await call(world.app, "GET", f"{V1}/invitations", secret=secret)).json()["data"] == []
    stale = await call(world.app, "POST", f"{V1}/invitations/{expired.id}/accept", secret=secret)
    assert stale.status == 409 and "expired" in stale.json()["error"]["message"]
    async with world.db.read() as tx:
        assert await q.get_membership(tx, team, user) is None


async def test_a_team_keeps_an_owner(world: World) -> None:
    admin, team = world.secrets["admin"], await world.fresh_team()
    first = await world.fresh_user(member_of=team, role="owner")
    path = f"{V1}/teams/{team}/members"
    for method, body in (("PUT", {"role": "viewer"}), ("DELETE", None)):
        reply = await call(world.app, method, f"{path}/{first}", body, secret=admin)
        assert reply.status == 409, reply.body
        assert reply.json()["error"]["code"] == "conflict"
        assert "last owner of team" in reply.json()["error"]["message"]
        assert "add another owner first" in reply.json()["error"]["message"]
    disable = await call(world.app, "PATCH", f"{V1}/users/{first}", {"disabled": True}, secret=admin)
    assert disable.status == 409
    second = await world.fresh_user()
    assert (await call(world.app, "POST", path, {"user_id": second, "role": "owner"},
                       secret=admin)).status == 201
    assert (await call(world.app, "PUT", f"{path}/{first}", {"role": "member"},
                       secret=admin)).status == 200
    assert (await call(world.app, "DELETE", f"{path}/{second}", secret=admin)).status == 409
    assert (await call(world.app, "DELETE", f"{V1}/teams/{team}", secret=admin)).status == 204


async def test_duplicates_are_409(world: World) -> None:
    admin = world.secrets["admin"]
    name, email = world.unique("dup"), f"{world.unique('dup')}@example.com"
    for path, body in ((f"{V1}/teams", {"name": name}), (f"{V1}/users", {"email": email}),
                       (f"{V1}/service-accounts", {"team_id": world.ids["A"], "name": name})):
        assert (await call(world.app, "POST", path, body, secret=admin)).status == 201
        reply = await call(world.app, "POST", path, body, secret=admin)
        assert reply.status == 409 and reply.json()["error"]["code"] == "conflict", reply.body
    upper = await call(world.app, "POST", f"{V1}/users", {"email": email.upper()}, secret=admin)
    assert upper.status == 409
    key_id, _ = await world.fresh_key()
    assert (await call(world.app, "POST", f"{V1}/keys/{key_id}/revoke", secret=admin)).status == 200
    rotated = await call(world.app, "POST", f"{V1}/keys/{key_id}/rotate", {"overlap_s": 0}, secret=admin)
    assert rotated.status == 409


async def test_key_secret_is_shown_once_and_works(world: World) -> None:
    body = {"name": "ci", "team_id": world.ids["A"], "scopes": ["inference", "admin"]}
    created = await call(world.app, "POST", f"{V1}/keys", body, secret=world.secrets["memberA"])
    assert created.status == 201
    key = created.json()
    secret = key["secret"]
    assert secret.startswith("sk-io-") and key["prefix"] == visible_prefix(secret)
    assert key["user_id"] == world.ids["memberA"] and "digest" not in key
    async with world.db.read() as tx:  # what the data plane's snapshot looks keys up by
        stored = await find_api_key_by_digest(tx, HASHER.digest(secret))
    assert stored is not None and stored.id == key["id"]
    for path in (f"{V1}/keys/{key['id']}", f"{V1}/keys?team_id={world.ids['A']}&limit=1000"):
        reply = await call(world.app, "GET", path, secret=world.secrets["admin"])
        assert reply.status == 200 and secret not in reply.body.decode()
        assert b'"secret"' not in reply.body and b"digest" not in reply.body
    audit = await call(world.app, "GET", f"{V1}/audit?target_id={key['id']}", secret=world.secrets["admin"])
    assert audit.json()["data"][0]["action"] == "key.create"
    assert secret not in audit.body.decode() and b"digest" not in audit.body
    me = await call(world.app, "GET", f"{V1}/me", secret=secret)
    assert me.json()["actor"] == f"key:{key['id']}"
    assert me.json()["team_roles"] == {world.ids["A"]: "member"} and me.json()["source"] == CLIENT


async def test_rotation_overlap_and_revocation(world: World) -> None:
    key_id, old = await world.fresh_key()
    admin = world.secrets["admin"]
    rotated = await call(world.app, "POST", f"{V1}/keys/{key_id}/rotate", {"overlap_s": 0}, secret=admin)
    assert rotated.status == 201
    new = rotated.json()
    assert new["rotated_from_id"] == key_id and new["secret"] != old
    assert (await call(world.app, "GET", f"{V1}/me", secret=old)).status == 401  # overlap 0: gone
    assert (await call(world.app, "GET", f"{V1}/me", secret=new["secret"])).status == 200
    revoked = await call(world.app, "POST", f"{V1}/keys/{new['id']}/revoke", secret=admin)
    assert revoked.status == 200 and revoked.json()["revoked_at"] is not None
    assert (await call(world.app, "GET", f"{V1}/me", secret=new["secret"])).status == 401
    listed = await call(world.app, "GET", f"{V1}/keys?user_id={world.ids['memberA']}&limit=1000",
                        secret=admin)
    assert new["id"] not in {k["id"] for k in listed.json()["data"]}
    listed = await call(world.app, "GET", f"{V1}/keys?user_id={world.ids['memberA']}&include_revoked="
                        "true&limit=1000", secret=admin)
    assert new["id"] in {k["id"] for k in listed.json()["data"]}


async def test_unusable_credentials_are_401(world: World) -> None:
    user = await world.fresh_user(member_of=world.ids["A"])
    secret, no_admin = new_secret(), new_secret()
    async with world.db.transaction() as tx:
        await repo.create_api_key(tx, name="x", prefix=visible_prefix(secret), digest=HASHER.digest(secret),
                                  user_id=user, team_id=world.ids["A"], scopes=("admin",))
        await repo.create_api_key(tx, name="y", prefix=visible_prefix(no_admin),
                                  digest=HASHER.digest(no_admin), user_id=user, scopes=("inference",))
    assert (await call(world.app, "GET", f"{V1}/me", secret=secret)).status == 200
    assert (await call(world.app, "GET", f"{V1}/me", secret=no_admin)).status == 401
    assert (await call(world.app, "GET", f"{V1}/me", secret="sk-io-unknown")).status == 401
    assert (await call(world.app, "GET", f"{V1}/me", headers={"authorization": "Basic eDp5"})).status == 401
    disabled = await call(world.app, "PATCH", f"{V1}/users/{user}", {"disabled": True},
                          secret=world.secrets["admin"])
    assert disabled.status == 200 and disabled.json()["disabled"] is True
    reply = await call(world.app, "GET", f"{V1}/me", secret=secret)
    assert reply.status == 401 and reply.json()["error"]["type"] == "authentication_error"


async def test_admin_cannot_lock_themselves_out(world: World) -> None:
    for change in ({"platform_role": None}, {"disabled": True}):
        reply = await call(world.app, "PATCH", f"{V1}/users/{world.ids['admin']}", change,
                           secret=world.secrets["admin"])
        assert reply.status == 403 and reply.json()["error"]["type"] == "permission_error"


async def test_user_patch_changes_only_fields_sent(world: World) -> None:
    user = await world.fresh_user()
    admin = world.secrets["admin"]
    reply = await call(world.app, "PATCH", f"{V1}/users/{user}", {"platform_role": "billing"}, secret=admin)
    assert reply.json()["platform_role"] == "billing" and reply.json()["disabled"] is False
    reply = await call(world.app, "PATCH", f"{V1}/users/{user}", {"disabled": True}, secret=admin)
    assert reply.json()["platform_role"] == "billing" and reply.json()["disabled"] is True
    reply = await call(world.app, "PATCH", f"{V1}/users/{user}", {"platform_role": None}, secret=admin)
    assert reply.json()["platform_role"] is None
    audit = await call(world.app, "GET", f"{V1}/audit?target_id={user}&action=user.update", secret=admin)
    entries = audit.json()["data"]
    assert [e["after"]["platform_role"] for e in entries] == ["billing", "billing", None]
    assert entries[0]["before"]["platform_role"] is None


async def test_extra_authenticators_are_consulted_after_keys(world: World) -> None:
    async def header_auth(request: Request, source: str | None) -> AdminPrincipal | None:
        if request.headers.get("x-test-user") == "ada":
            return AdminPrincipal(actor="test:ada", platform_role="auditor")
        return None

    app = build_admin_app(world.db, HASHER, extra_authenticators=[header_auth])
    me = await call(app, "GET", f"{V1}/me", headers={"x-test-user": "ada"})
    assert me.status == 200 and me.json()["actor"] == "test:ada" and me.json()["source"] == CLIENT
    assert (await call(app, "GET", f"{V1}/users", headers={"x-test-user": "ada"})).status == 200
    denied = await call(app, "POST", f"{V1}/teams", {"name": "x"}, headers={"x-test-user": "ada"})
    assert denied.status == 403 and denied.json()["error"]["type"] == "permission_error"
    assert (await call(app, "GET", f"{V1}/me", headers={"x-test-user": "bob"})).status == 401
    keyed = await call(app, "GET", f"{V1}/me", secret=world.secrets["ownerA"])
    assert keyed.json()["actor"] == world.actors["ownerA"]


async def test_grant_models_with_slashes_round_trip(world: World) -> None:
    admin = world.secrets["admin"]
    path = f"{V1}/grants/{world.ids['B']}/meta-llama/Llama-3.1-8B"
    put = await call(world.app, "PUT", path, secret=admin)
    assert put.status == 200 and put.json()["model"] == "meta-llama/Llama-3.1-8B"
    assert (await call(world.app, "PUT", path, secret=admin)).status == 200  # idempotent
    listed = await call(world.app, "GET", f"{V1}/grants?team_id={world.ids['B']}", secret=admin)
    assert "meta-llama/Llama-3.1-8B" in {g["model"] for g in listed.json()["data"]}
    assert (await call(world.app, "DELETE", path, secret=admin)).status == 204
    assert (await call(world.app, "DELETE", path, secret=admin)).status == 404
