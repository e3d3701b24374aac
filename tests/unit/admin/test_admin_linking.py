"""People signed in through OIDC or the auth proxy act as their user row, found by verified email.

The whole path of a serving process: ``wiring.human_authenticators`` → ``oidc`` / ``proxy_auth``
→ ``linking`` → the admin API, on the seeded world of ``test_admin_api`` (SQLite and
PostgreSQL). Tokens are signed with a key made here; the JWKS is a local file.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm
from tests.unit.admin.test_admin_api import CLIENT, HASHER, V1, Reply, World, call, world

from inferenceops.admin.api import build_admin_app
from inferenceops.admin.api.deps import OWN, PLATFORM_ROLE_PERMISSIONS, TEAM, TEAM_ROLE_PERMISSIONS
from inferenceops.admin.oidc import OIDCAuthenticator
from inferenceops.admin.principal import PLATFORM_ROLES, TEAM_ROLES
from inferenceops.admin.wiring import human_authenticators
from inferenceops.settings import Settings
from inferenceops.store import NotFound, repo
from inferenceops.store.repo.audit import list_audit

pytestmark = pytest.mark.asyncio(loop_scope="module")
__all__ = ["world"]  # the module-scoped fixture, imported so this module gets its own world

ISSUER = "https://idp.example.com/realms/ops"
AUDIENCE = "inferenceops-admin"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
MAPPINGS = [
    {"group": "ops", "platform_role": "platform-admin"},
    {"group": "auditors", "platform_role": "auditor"},
    {"group": "a-viewers", "team": "team-A", "role": "viewer"},
    {"group": "b-owners", "team": "team-B", "role": "owner"},
]
PROXY = {"user_header": "x-forwarded-email", "groups_header": "x-forwarded-groups",
         "trusted_proxies": ["10.0.0.0/8"], "group_mappings": MAPPINGS}


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("oidc") / "jwks.json"
    public = {**RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True), "kid": "k1", "use": "sig"}
    path.write_text(json.dumps({"keys": [public]}))
    return path


@pytest.fixture
def oidc_app(world: World, jwks_file: Path) -> FastAPI:
    return app_with(world, jwks_file)


def app_with(w: World, jwks_file: Path, *, proxy: dict[str, Any] | None = None,
             **oidc: Any) -> FastAPI:
    """The admin app of a process configured with OIDC (``oidc`` overrides) and maybe the proxy."""
    settings = Settings(oidc={"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": jwks_file,
                              "group_mappings": MAPPINGS, **oidc}, proxy_auth=proxy)
    assert settings.oidc is not None
    authenticators = human_authenticators(settings, w.db, oidc=OIDCAuthenticator(settings.oidc))
    return build_admin_app(w.db, HASHER, extra_authenticators=authenticators)


def token(email: str | None, *, sub: str = "sub-1", groups: tuple[str, ...] = (),
          **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300,
            "email": email, "email_verified": True, "groups": list(groups), **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, KEY, algorithm="RS256",
                      headers={"kid": "k1"})


async def me(app: FastAPI, bearer: str) -> dict[str, Any]:
    reply = await call(app, "GET", f"{V1}/me", secret=bearer)
    assert reply.status == 200, reply.body
    return reply.json()  # type: ignore[no-any-return]


async def new_user(w: World, *, disabled: bool = False, platform_role: str | None = None) -> tuple[str, str]:
    """(id, email) of a fresh user."""
    email = f"{w.unique('person')}@example.com"
    async with w.db.transaction() as tx:
        user = await repo.create_user(tx, email, platform_role=platform_role)
        if disabled:
            await repo.set_user_disabled(tx, user.id, True)
    return user.id, email


# --- linking by verified email -------------------------------------------------------------------

async def test_a_verified_email_acts_as_its_user(world: World, oidc_app: FastAPI) -> None:
    """memberA is a stored member of team A; the IdP's groups make them a viewer of A and an
    owner of B. The stronger role per team wins; the email's case does not matter."""
    principal = await me(oidc_app, token("MemberA@Example.COM", groups=("a-viewers", "b-owners")))
    assert principal == {
        "actor": f"user:{world.ids['memberA']}", "user_id": world.ids["memberA"],
        "platform_role": None, "team_roles": {world.ids["A"]: "member", world.ids["B"]: "owner"},
        "source": CLIENT, "via": f"oidc:{ISSUER}#sub-1"}


@pytest.mark.parametrize(("stored", "groups", "expected"), [
    ("auditor", (), "auditor"),  # the stored role applies without any group
    ("auditor", ("ops",), "platform-admin"),  # a group may give more than the store
    ("platform-admin", ("auditors",), "platform-admin"),  # ... but never takes away
    ("billing", ("auditors",), "auditor"),
    (None, ("auditors",), "auditor"),
])
async def test_platform_role_is_the_stronger_grant(world: World, oidc_app: FastAPI, stored: str | None,
                                                   groups: tuple[str, ...], expected: str) -> None:
    user, email = await new_user(world, platform_role=stored)
    principal = await me(oidc_app, token(email, groups=groups))
    assert (principal["user_id"], principal["platform_role"]) == (user, expected)


@pytest.mark.parametrize(("verified", "assume", "linked"), [
    (True, False, True), ("true", False, True), (False, False, False), (False, True, False),
    (None, False, False), (None, True, True),
])
async def test_only_verified_emails_link(world: World, jwks_file: Path, verified: Any, assume: bool,
                                         linked: bool) -> None:
    """``email_verified`` true links; absent links only when the operator says the IdP verifies
    every email; false never (else anyone who can type an address at the IdP is that user)."""
    app = app_with(world, jwks_file, assume_email_verified=assume)
    principal = await me(app, token("memberA@example.com", email_verified=verified))
    if linked:
        assert principal["user_id"] == world.ids["memberA"]
    else:
        assert principal["user_id"] is None and principal["actor"] == f"oidc:{ISSUER}#sub-1"
        assert principal["via"] is None and principal["team_roles"] == {}


async def test_unknown_email_stays_the_idp_identity(world: World, oidc_app: FastAPI) -> None:
    email = f"{world.unique('stranger')}@example.com"
    principal = await me(oidc_app, token(email, groups=("a-viewers",)))
    assert principal["actor"] == f"oidc:{ISSUER}#sub-1" and principal["user_id"] is None
    assert principal["team_roles"] == {world.ids["A"]: "viewer"}  # team name resolved to its id
    async with world.db.read() as tx:
        with pytest.raises(NotFound):  # provisioning is off by default
            await repo.get_user_by_email(tx, email)


async def test_a_disabled_user_is_refused_whatever_the_token_says(world: World,
                                                                 oidc_app: FastAPI) -> None:
    _, email = await new_user(world, disabled=True)
    reply = await call(oidc_app, "GET", f"{V1}/me", secret=token(email, groups=("ops",)))
    assert reply.status == 403, reply.body
    error = reply.json()["error"]
    assert error["type"] == "permission_error" and "disabled" in error["message"]


async def test_a_linked_member_manages_their_own_keys_and_is_audited_as_the_user(
        world: World, oidc_app: FastAPI) -> None:
    bearer = token("memberA@example.com", sub="idp-member-a")
    created = await call(oidc_app, "POST", f"{V1}/keys", {"name": "laptop", "team_id": world.ids["A"],
                                                          "scopes": ["inference"]}, secret=bearer)
    assert created.status == 201, created.body
    key = created.json()
    assert key["user_id"] == world.ids["memberA"]
    revoked = await call(oidc_app, "POST", f"{V1}/keys/{key['id']}/revoke", secret=bearer)
    assert revoked.status == 200
    entries = await _audit(world, target_id=key["id"])
    assert [(e.action, e.actor, e.source) for e in entries] == [
        (action, f"user:{world.ids['memberA']}", f"{CLIENT} via oidc:{ISSUER}#idp-member-a")
        for action in ("key.create", "key.revoke")]
    unlinked = token("memberA@example.com", email_verified=False)  # the same person, unverified
    refused = await call(oidc_app, "POST", f"{V1}/keys", {"name": "x", "team_id": world.ids["A"],
                                                          "scopes": ["inference"]}, secret=unlinked)
    assert refused.status == 403  # no team role at all without the user's memberships


async def test_a_linked_owner_is_refused_removing_themselves_last(world: World,
                                                                 oidc_app: FastAPI) -> None:
    reply = await call(oidc_app, "DELETE", f"{V1}/teams/{world.ids['A']}/members/{world.ids['ownerA']}",
                       secret=token("ownera@example.com"))
    assert reply.status == 409 and "add another owner first" in reply.json()["error"]["message"]


# --- provisioning ---------------------------------------------------------------------------------

async def test_provisioning_makes_the_user_once(world: World, jwks_file: Path) -> None:
    app = app_with(world, jwks_file, provision_users=True)
    email = f"{world.unique('newcomer')}@example.com"
    bearer = token(email.upper(), sub="idp-newcomer", name="New Comer", groups=("a-viewers",))
    replies = await asyncio.gather(*(call(app, "GET", f"{V1}/me", secret=bearer) for _ in range(3)))
    assert [r.status for r in replies] == [200] * 3, [r.body for r in replies]
    ids = {r.json()["user_id"] for r in replies}  # concurrent first sign-ins: one user
    assert len(ids) == 1 and None not in ids
    (user_id,) = ids
    async with world.db.read() as tx:
        user = await repo.get_user_by_email(tx, email)
    assert (user.id, user.email, user.display_name, user.platform_role) == (
        user_id, email, "New Comer", None)
    again = await me(app, bearer)
    assert again["user_id"] == user_id and again["team_roles"] == {world.ids["A"]: "viewer"}
    entries = await _audit(world, target_id=user_id)
    assert [(e.action, e.actor, e.source) for e in entries] == [
        ("user.provision", f"user:{user_id}", f"{CLIENT} via oidc:{ISSUER}#idp-newcomer")]
    assert entries[0].after is not None and entries[0].after["email"] == email


async def test_provisioning_needs_a_verified_email(world: World, jwks_file: Path) -> None:
    app = app_with(world, jwks_file, provision_users=True)
    email = f"{world.unique('unverified')}@example.com"
    principal = await me(app, token(email, email_verified=False))
    assert principal["user_id"] is None
    async with world.db.read() as tx:
        with pytest.raises(NotFound):
            await repo.get_user_by_email(tx, email)


# --- the trusted proxy -----------------------------------------------------------------------------

async def test_proxy_emails_are_trusted_and_linked(world: World, jwks_file: Path) -> None:
    app = app_with(world, jwks_file, proxy=PROXY)
    headers = {"x-forwarded-email": "OwnerB@example.com", "x-forwarded-groups": "a-viewers"}
    reply = await call(app, "GET", f"{V1}/me", headers=headers)
    assert reply.json() == {
        "actor": f"user:{world.ids['ownerB']}", "user_id": world.ids["ownerB"], "platform_role": None,
        "team_roles": {world.ids["A"]: "viewer", world.ids["B"]: "owner"}, "source": CLIENT,
        "via": "proxy:OwnerB@example.com"}
    not_an_email = await call(app, "GET", f"{V1}/me", headers={"x-forwarded-email": "ownerb"})
    assert not_an_email.json()["actor"] == "proxy:ownerb" and not_an_email.json()["user_id"] is None
    _, disabled = await new_user(world, disabled=True)
    refused = await call(app, "GET", f"{V1}/me", headers={"x-forwarded-email": disabled})
    assert refused.status == 403


async def test_proxy_provisioning(world: World, jwks_file: Path) -> None:
    app = app_with(world, jwks_file, proxy={**PROXY, "provision_users": True})
    email = f"{world.unique('proxied')}@example.com"
    reply: Reply = await call(app, "GET", f"{V1}/me", headers={"x-forwarded-email": email})
    async with world.db.read() as tx:
        user = await repo.get_user_by_email(tx, email)
    assert reply.json()["user_id"] == user.id and reply.json()["via"] == f"proxy:{email}"


# --- the policy's premise ----------------------------------------------------------------------------

async def test_each_role_allows_what_the_weaker_ones_do() -> None:
    """"The stronger role wins" (linking, group mappings) assumes the roles form a chain."""
    for stronger, weaker in zip(PLATFORM_ROLES, PLATFORM_ROLES[1:], strict=False):
        assert PLATFORM_ROLE_PERMISSIONS[stronger] >= PLATFORM_ROLE_PERMISSIONS[weaker]
    rank = {TEAM: 2, OWN: 1}
    for stronger, weaker in zip(TEAM_ROLES, TEAM_ROLES[1:], strict=False):
        for permission, extent in TEAM_ROLE_PERMISSIONS[weaker].items():
            assert rank[TEAM_ROLE_PERMISSIONS[stronger].get(permission, OWN)] >= rank[extent]
            assert permission in TEAM_ROLE_PERMISSIONS[stronger]


async def _audit(w: World, *, target_id: str) -> list[Any]:
    async with w.db.read() as tx:
        return list((await list_audit(tx, target_id=target_id, limit=100)).items)
