"""No actor ever gains a permission it was not given: random admin actions by non-admins.

A hypothesis state machine drives the real admin API (in process, on SQLite and
PostgreSQL) with random sequences of actions taken by three team users and a
newcomer, each through a random credential they hold — an API key, or a token of
the OIDC issuer the platform trusts (linked to its user by verified email on first
use): invitations and their answers, member changes, keys created, rotated and
revoked, service accounts, attempts to re-enable themselves or take a platform
role. A platform admin is a member of one team from the start — the bait of the
reported escalation — and never acts; the operator disables and re-enables
actors at random; a stranger whose token carries the platform admin's verified
email and the group mapped to platform-admin tries its luck.

The model predicts what each action may do from the rules alone (who may issue
which key, owners invite and people accept, a key acts with its owner's current
role in its team). After every step it checks, against the store, the admin
API and the data plane's snapshot:

* any action the API let through was one the rules allow;
* memberships are exactly the model's: nobody is in a team but by its start, an
  invitation they accepted, or an owner's change to an existing member's role;
* every credential an actor holds speaks for that actor (or a service account
  of a team it owned when it made the key), never with a platform role, and
  with exactly the role its owner holds now in the key's team — on the admin
  API and on the data plane, where it may use only its own team's models;
* nobody ever obtained a key of the platform admin;
* a disabled actor's every credential is refused, keys and tokens alike, and its
  keys are out of the data plane's snapshot;
* the stranger is never anyone: refused, and linked to nobody.

So no actor holds, directly or through a credential it created, a permission it
did not hold at the start, unless someone who held it gave it and they accepted.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from tests.support.postgres import Postgres, probe, run_sync
from tests.unit.admin.test_admin_api import HASHER, V1, Reply, call

from inferenceops.admin.api import build_admin_app
from inferenceops.admin.oidc import OIDCAuthenticator
from inferenceops.admin.wiring import human_authenticators
from inferenceops.platform.identity import key_power
from inferenceops.platform.keys import new_secret, visible_prefix
from inferenceops.settings import Settings
from inferenceops.store import Conflict, Database, repo
from inferenceops.store.migrate import upgrade
from inferenceops.store.repo import sign_in_links
from inferenceops.store.snapshot_builder import build_identity

ACTORS = ("u0", "u1", "u2", "u3")
TEAMS = ("T0", "T1")
ROLES = ("owner", "member", "viewer")
START = {("T0", "u0"): "owner", ("T1", "u1"): "owner", ("T0", "u2"): "member",
         ("T1", "u3"): "viewer", ("T0", "P"): "member"}
SCOPE_SETS = (("inference",), ("admin",), ("inference", "admin"), ("batch", "admin"))
WRITES_KEYS = ("owner", "member")  # team roles holding keys:write (on their own keys)
ISSUER, AUDIENCE = "https://idp.example.com/privilege", "inferenceops-admin"
SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER = "stranger"


def _jwks_file() -> Path:
    public = jwt.algorithms.ECAlgorithm.to_jwk(SIGNING_KEY.public_key(), as_dict=True)
    path = Path(tempfile.mkdtemp(prefix="privilege-")) / "jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": "e1", "use": "sig"}]}))
    return path


JWKS_FILE = _jwks_file()


def id_token(sub: str, email: str, groups: tuple[str, ...] = ()) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 3600,
                       "email": email, "email_verified": True, "groups": list(groups)},
                      SIGNING_KEY, algorithm="ES256", headers={"kid": "e1"})


@dataclass
class Key:
    """A credential: an API key, or (``token``) a person's OIDC sign-in."""

    id: str
    user: str | None  # a person (model name) or None for a service account's key
    account: str | None
    team: str | None
    scopes: frozenset[str]
    revoked: bool = False
    token: bool = False


@dataclass
class Model:
    ids: dict[str, str] = field(default_factory=dict)  # model name -> store id
    members: dict[tuple[str, str], str] = field(default_factory=dict)
    keys: dict[str, Key] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)  # account id -> team
    invitations: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # open: team, user, role
    held: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # actor -> (key id, secret)
    admin_keys: frozenset[str] = frozenset()
    disabled: set[str] = field(default_factory=set)  # actors the operator has disabled

    def power(self, key: Key) -> tuple[str, str] | None:
        """(team, role) an API key acts with now, per the rules; None: it can do nothing."""
        if key.revoked or key.team is None or key.token or key.user in self.disabled:
            return None
        if key.account is not None:
            return key.team, "member"
        role = self.members.get((key.team, key.user or ""))
        found = key_power(key.scopes, key.team, service_account=False, team_role=role)
        return None if found is None else (key.team, role or "")

    def role_in(self, key: Key, team: str) -> str | None:
        """The role a credential acts with in ``team`` now: a key's in its own team only, a
        signed-in person's in every team they are a member of; None if disabled."""
        if key.token:
            return None if key.user in self.disabled else self.members.get((team, key.user or ""))
        power = self.power(key)
        return power[1] if power is not None and power[0] == team else None

    def team_roles(self, key: Key) -> dict[str, str]:
        """{team: role} the admin API must show for a credential that acts at all."""
        if key.token:
            return {t: r for (t, u), r in self.members.items() if u == key.user}
        power = self.power(key)
        return {} if power is None else {power[0]: power[1]}

    def owners(self, team: str) -> int:
        """Enabled owners of ``team``: the store keeps at least one."""
        return sum(1 for (t, u), r in self.members.items()
                   if t == team and r == "owner" and u not in self.disabled)


class PrivilegeMachine(RuleBasedStateMachine):
    """One example: a fresh world (unique names) in the shared store."""

    url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.db = Database(self.url)
        signin = Settings(oidc={"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": JWKS_FILE,
                                "algorithms": ["ES256"],
                                "group_mappings": [{"group": "ops", "platform_role": "platform-admin"}]})
        assert signin.oidc is not None
        self.app = build_admin_app(self.db, HASHER, extra_authenticators=human_authenticators(
            signin, self.db, oidc=OIDCAuthenticator(signin.oidc)))
        self.m = Model()
        self.run(self._seed())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.db.close())
        self.loop.close()

    async def _seed(self) -> None:
        m, tag = self.m, uuid.uuid4().hex[:8]
        async with self.db.transaction() as tx:
            for team in TEAMS:
                m.ids[team] = (await repo.create_team(tx, f"{team}-{tag}")).id
                await repo.grant(tx, m.ids[team], f"model-{team}")
            for name in (*ACTORS, "P"):
                m.ids[name] = (await repo.create_user(
                    tx, f"{name}-{tag}@example.com",
                    platform_role="platform-admin" if name == "P" else None)).id
            for (team, user), role in START.items():
                await repo.set_membership(tx, m.ids[team], m.ids[user], role)
                m.members[team, user] = role
            for actor in ACTORS:
                team = next(t for (t, u) in START if u == actor)
                secret = new_secret()
                record = await repo.create_api_key(
                    tx, name=actor, prefix=visible_prefix(secret), digest=HASHER.digest(secret),
                    user_id=m.ids[actor], team_id=m.ids[team], scopes=("inference", "admin"))
                m.keys[record.id] = Key(record.id, actor, None, team, frozenset({"inference", "admin"}))
                m.held[actor] = [(record.id, secret)]
                # The same person signed in through the IdP (linked by email on first use).
                token_id = f"oidc-{actor}-{tag}"
                m.keys[token_id] = Key(token_id, actor, None, None, frozenset({"admin"}), token=True)
                m.held[actor].append((token_id, id_token(token_id, f"{actor}-{tag}@example.com")))
            # Someone the IdP vouches for with the platform admin's address and the admin group.
            self.stranger = id_token(f"{STRANGER}-{tag}", f"P-{tag}@example.com", groups=("ops",))
            secret = new_secret()
            record = await repo.create_api_key(tx, name="root", prefix=visible_prefix(secret),
                                               digest=HASHER.digest(secret), user_id=m.ids["P"],
                                               scopes=("inference", "admin"))
            m.admin_keys = frozenset({record.id})

    # ---- helpers --------------------------------------------------------------------------------

    def name_of(self, store_id: str) -> str:
        return next(n for n, i in self.m.ids.items() if i == store_id)

    def credential(self, actor: str, pick: int) -> tuple[Key, str]:
        key_id, secret = self.m.held[actor][pick % len(self.m.held[actor])]
        return self.m.keys[key_id], secret

    def act(self, method: str, path: str, secret: str, body: Any = None) -> Reply:
        reply: Reply = self.run(call(self.app, method, f"{V1}{path}", body, secret=secret))
        assert reply.status < 500, (method, path, reply.status, reply.body)
        event(f"{method} {path.split('/')[1]}: {'done' if reply.status < 300 else reply.status}")
        return reply

    def owner_of(self, key: Key, team: str) -> bool:
        return self.m.role_in(key, team) == "owner"

    def receive(self, actor: str, reply: Reply, key: Key) -> None:
        created = reply.json()
        self.m.keys[created["id"]] = key
        key.id = created["id"]
        self.m.held[actor].append((created["id"], created["secret"]))

    # ---- actions --------------------------------------------------------------------------------

    @rule(actor=st.sampled_from(ACTORS), pick=st.integers(0, 9), team=st.sampled_from(TEAMS),
          who=st.sampled_from((*ACTORS, "P")), role=st.sampled_from(ROLES))
    def invite(self, actor: str, pick: int, team: str, who: str, role: str) -> None:
        key, secret = self.credential(actor, pick)
        reply = self.act("POST", f"/teams/{self.m.ids[team]}/invitations", secret,
                         {"user_id": self.m.ids[who], "role": role})
        if reply.status == 201:
            assert self.owner_of(key, team), "an invitation was made by someone not owning the team"
            assert (team, who) not in self.m.members
            self.m.invitations = {i: v for i, v in self.m.invitations.items()
                                  if v[:2] != (team, who)}
            self.m.invitations[reply.json()["id"]] = (team, who, role)

    @precondition(lambda self: bool(self.m.invitations))
    @rule(actor=st.sampled_from(ACTORS), pick=st.integers(0, 9), which=st.integers(0, 9),
          accept=st.booleans())
    def answer(self, actor: str, pick: int, which: int, accept: bool) -> None:
        invitation = list(self.m.invitations)[which % len(self.m.invitations)]  # creation order
        key, secret = self.credential(actor, pick)
        reply = self.act("POST", f"/invitations/{invitation}/{'accept' if accept else 'decline'}",
                         secret)
        if reply.status == 200:
            team, user, role = self.m.invitations.pop(invitation)
            assert key.user == user and (self.m.power(key) is not None or (
                key.token and user not in self.m.disabled)), \
                "an invitation was answered by someone it was not for"
            if accept:
                self.m.members[team, user] = role

    @rule(actor=st.sampled_from(ACTORS), pick=st.integers(0, 9), team=st.sampled_from(TEAMS),
          who=st.sampled_from((*ACTORS, "P")), role=st.sampled_from(ROLES),
          how=st.sampled_from(("put", "post")))
    def set_member(self, actor: str, pick: int, team: str, who: str, role: str, how: str) -> None:
        key, secret = self.credential(actor, pick)
        t, u = self.m.ids[team], self.m.ids[who]
        reply = (self.act("PUT", f"/teams/{t}/members/{u}", secret, {"role": role}) if how == "put"
                 else self.act("POST", f"/teams/{t}/members", secret, {"user_id": u, "role": role}))
        if reply.status in (200, 201):
            assert self.owner_of(key, team), "a role was set by someone not owning the team"
            assert (team, who) in self.m.members, "someone was put in a team without consent"
            if self.m.members[team, who] == "owner" and role != "owner" and who not in self.m.disabled:
                assert self.m.owners(team) > 1
            self.m.members[team, who] = role

    @rule(actor=st.sampled_from(ACTORS), pick=st.integers(0, 9), team=st.sampled_from(TEAMS),
          who=st.sampled_from((*ACTORS, "P")))
    def remove_member(self, actor: str, pick: int, team: str, who: str) -> None:
        key, secret = self.credential(actor, pick)
        reply = self.act("DELETE", f"/teams/{self.m.ids[team]}/members/{self.m.ids[who]}", secret)
        if reply.status == 204:
            assert self.owner_of(key, team)
            assert (self.m.members.pop((team, who)) != "owner" or who in self.m.disabled
                    or self.m.owners(team) >= 1)

    @rule(actor=st.sampled_from(ACTORS), pick=st.integers(0, 9),
          whose=st.sampled_from(("self", "teammate", "admin", "anyone")), which=st.integers(0, 9),
          team=st.sampled_from(("own", "other", None)), scopes=st.sampled_from(SCOPE_SETS))
    def create_key(self, actor: str, pick: int, whose: str, which: int, team: str | None,
                   scopes: tuple[str, ...]) -> None:
        """A key for oneself, a teammate (the reported attack), the platform admin, or anyone."""
        key, secret = self.credential(actor, pick)
        own = key.team or next((t for (t, u) in sorted(self.m.members) if u == actor), TEAMS[0])
        teammates = sorted(u for (t, u) in self.m.members if t == own and u != actor)
        owner = {"self": actor, "admin": "P",
                 "teammate": (teammates or [actor])[which % max(1, len(teammates))],
                 "anyone": (*ACTORS, "P")[which % 5]}[whose]
        team = {"own": own, "other": next(t for t in TEAMS if t != own), None: None}[team]
        body: dict[str, Any] = {"name": "k", "user_id": self.m.ids[owner], "scopes": list(scopes)}
        if team is not None:
            body["team_id"] = self.m.ids[team]
        reply = self.act("POST", "/keys", secret, body)
        if reply.status == 201:
            assert owner == key.user and team is not None, f"{actor} issued a key for {owner} in {team}"
            assert self.m.role_in(key, team) in WRITES_KEYS
            self.receive(actor, reply, Key("", owner, None, team, frozenset(scopes)))

    @rule(actor=st.sampled_from(ACTORS), pick=st.integers(0, 9), team=st.sampled_from(TEAMS))
    def create_account(self, actor: str, pick: int, team: str) -> None:
        key, secret = self.credential(actor, pick)
        reply = self.act("POST", "/service-accounts", secret,
                         {"team_id": self.m.ids[team], "name": uuid.uuid4().hex[:8]})
        if reply.status == 201:
            assert self.owner_of(key, team)
            self.m.accounts[reply.json()["id"]] = team

    @precondition(lambda self: bool(self.m.accounts))
    @rule(actor=st.sampled_from(ACTORS), pick=st.integers(0, 9), which=st.integers(0, 9),
          scopes=st.sampled_from(SCOPE_SETS))
    def create_account_key(self, actor: str, pick: int, which: int, scopes: tuple[str, ...]) -> None:
        account = list(self.m.accounts)[which % len(self.m.accounts)]
        key, secret = self.credential(actor, pick)
        reply = self.act("POST", "/keys", secret,
                         {"name": "k", "service_account_id": account, "scopes": list(scopes)})
        if reply.status == 201:
            team = self.m.accounts[account]
            assert self.owner_of(key, team), f"{actor} made a key for a service account of {team}"
            self.receive(actor, reply, Key("", None, account, team, frozenset(scopes)))

    @rule(actor=st.sampled_from(ACTORS), pick=st.integers(0, 9), which=st.integers(0, 99),
          rotate=st.booleans())
    def rotate_or_revoke(self, actor: str, pick: int, which: int, rotate: bool) -> None:
        ids = [i for i, k in self.m.keys.items() if not k.token]  # creation order, as replays
        target = self.m.keys[ids[which % len(ids)]]
        key, secret = self.credential(actor, pick)
        reply = self.act("POST", f"/keys/{target.id}/{'rotate' if rotate else 'revoke'}", secret,
                         {"overlap_s": 0} if rotate else None)
        if reply.status not in (200, 201):
            return
        role = self.m.role_in(key, target.team or "")
        assert role is not None
        assert not (rotate and target.revoked), "a revoked or expired key was rotated back to life"
        if target.account is not None or not rotate:
            assert role == "owner" or (target.user == key.user and role in WRITES_KEYS)
        else:
            assert target.user == key.user and role in WRITES_KEYS, \
                f"{actor} rotated {target.user}'s key and got its secret"
        target.revoked = True  # revoked, or expired now (rotated with no overlap)
        if rotate:
            self.receive(actor, reply, Key("", target.user, target.account, target.team,
                                           target.scopes))

    @rule(actor=st.sampled_from(ACTORS), pick=st.integers(0, 9),
          change=st.sampled_from(({"disabled": False}, {"disabled": True},
                                  {"platform_role": "platform-admin"}, {"platform_role": "auditor"})))
    def change_own_standing(self, actor: str, pick: int, change: dict[str, Any]) -> None:
        """Re-enable oneself (the reported escape), or take a platform role: never."""
        _, secret = self.credential(actor, pick)
        reply = self.act("PATCH", f"/users/{self.m.ids[actor]}", secret, change)
        assert reply.status >= 400, f"{actor} changed their own standing: {change}"

    @rule(who=st.sampled_from(ACTORS), disabled=st.booleans())
    def operator_disables(self, who: str, disabled: bool) -> None:
        """A platform admin (not an actor) disables or re-enables someone."""
        async def apply() -> bool:
            try:
                async with self.db.transaction() as tx:
                    await repo.set_user_disabled(tx, self.m.ids[who], disabled)
            except Conflict:  # a team's last owner stays enabled
                return False
            return True
        if self.run(apply()):
            (self.m.disabled.add if disabled else self.m.disabled.discard)(who)
            event(f"operator {'disables' if disabled else 'enables'} a user")
        else:
            assert disabled and who not in self.m.disabled and any(
                self.m.owners(t) == 1 and self.m.members.get((t, who)) == "owner" for t in TEAMS)

    @rule(action=st.sampled_from((("GET", "/users"), ("PATCH", "/users/{P}"),
                                  ("POST", "/teams/{T0}/members"))))
    def stranger_tries(self, action: tuple[str, str]) -> None:
        method, path = action
        body = {"disabled": True} if method == "PATCH" else (
            {"user_id": self.m.ids["u3"], "role": "owner"} if method == "POST" else None)
        reply = self.act(method, path.format(**self.m.ids), self.stranger, body)
        assert reply.status == 403, ("the stranger got in", reply.status, reply.body)

    # ---- the invariant --------------------------------------------------------------------------

    @invariant()
    def nobody_holds_what_they_were_not_given(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        m = self.m
        async with self.db.read() as tx:
            stored = {(self.name_of(r.team_id), self.name_of(r.user_id)): r.role
                      for team in TEAMS for r in await repo.list_memberships(tx, team_id=m.ids[team])}
            admin_keys = {k.id for k in (await repo.list_api_keys(
                tx, user_id=m.ids["P"], include_revoked=True, limit=1000)).items}
        assert stored == m.members
        assert admin_keys == m.admin_keys, "someone obtained a key of the platform admin"
        identity = await build_identity(self.db)
        stranger = await call(self.app, "GET", f"{V1}/me", secret=self.stranger)
        assert stranger.status == 403, stranger.body
        async with self.db.read() as tx:
            linked = await sign_in_links.list_links(tx, issuer=ISSUER)
        assert not any(link.subject.startswith(STRANGER) for link in linked)
        assert not any(link.user_id == m.ids["P"] for link in linked)
        for actor, held in m.held.items():
            for key_id, secret in held:
                key = m.keys[key_id]
                power = m.power(key)
                me = await call(self.app, "GET", f"{V1}/me", secret=secret)
                if key.token:
                    if actor in m.disabled:
                        assert me.status == 403, (actor, me.body)
                        continue
                    assert me.status == 200, (actor, me.body)
                    got = me.json()
                    assert (got["user_id"], got["platform_role"]) == (m.ids[actor], None)
                    assert got["team_roles"] == {m.ids[t]: r for t, r in m.team_roles(key).items()}
                    continue
                live = identity.key(HASHER.digest(secret))
                if power is None or "admin" not in key.scopes or (
                        key.user is not None and not key_power(
                            key.scopes, key.team, service_account=False, team_role=power[1])):
                    assert me.status == 401, (actor, key, me.body)
                else:
                    assert me.status == 200, (actor, key, power, me.body)
                    got = me.json()
                    assert got["platform_role"] is None
                    assert got["user_id"] in (m.ids[actor], None) and got["user_id"] == (
                        None if key.user is None else m.ids[key.user])
                    assert got["team_roles"] == {m.ids[power[0]]: power[1]}, (actor, key, got)
                if key.user in m.disabled:
                    assert live is None, "a disabled user's key is in the data plane's snapshot"
                if live is None or live.expired(time.time()):  # expiry is checked at use
                    continue
                assert power is not None and live.team_id == m.ids[power[0]]
                assert live.principal.platform_role is None
                other = next(t for t in TEAMS if t != power[0])
                assert not identity.may_use(live, f"model-{other}")


@dataclass
class Store:
    url: str


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'privilege.db'}"
        run_sync(upgrade(url))
        yield Store(url)
        return
    dsn, reason = run_sync(probe())
    if dsn is None:
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 ({reason})")
    pg = Postgres(dsn)
    name = run_sync(pg.create())
    url = pg.url(name)
    run_sync(upgrade(url))
    yield Store(url)
    run_sync(pg.drop(name))


# 15 examples of 25 steps take 40-80 s on a 2-core VM, more on a loaded one: past the suite's
# 120 s per-test timeout once in a CI run. The examples stay; the deadline grows.
@pytest.mark.timeout(360)
def test_no_actor_gains_a_permission_it_was_not_given(store: Store) -> None:
    PrivilegeMachine.url = store.url
    run_state_machine_as_test(PrivilegeMachine, settings=settings(
        max_examples=15, stateful_step_count=25, deadline=None,
        # No shrinking: a failure is reported as found (shrinking a store-backed machine can take
        # many minutes); every step is printed, which is enough to replay it by hand.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
