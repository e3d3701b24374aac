"""People signed in through OIDC or the auth proxy act as their linked user row, or not at all.

The whole path of a serving process: ``wiring.human_authenticators`` → ``oidc`` / ``proxy_auth``
→ ``linking`` → the admin API, on the seeded world of ``test_admin_api`` (SQLite and
PostgreSQL). Tokens are signed with a key made here; the JWKS is a local file.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm
from tests.unit.admin.test_admin_api import CLIENT, HASHER, V1, World, call, world

from inferenceops.admin.api import build_admin_app
from inferenceops.admin.api.deps import OWN, PLATFORM_ROLE_PERMISSIONS, TEAM, TEAM_ROLE_PERMISSIONS
from inferenceops.admin.oidc import OIDCAuthenticator
from inferenceops.admin.principal import PLATFORM_ROLES, TEAM_ROLES
from inferenceops.admin.wiring import human_authenticators
from inferenceops.control.bootstrap import BOOTSTRAP_EMAIL
from inferenceops.settings import Settings
from inferenceops.store import NotFound, repo
from inferenceops.store.repo import sign_in_links
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


def token(email: str | None, *, sub: str | None = None, groups: tuple[str, ...] = (),
          **claims: Any) -> str:
    """A token of ISSUER; ``sub`` defaults to a new subject (an identity linked to nobody yet)."""
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub or f"sub-{uuid.uuid4().hex[:12]}",
            "iat": now, "exp": now + 300, "email": email, "email_verified": True,
            "groups": list(groups), **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, KEY, algorithm="RS256",
                      headers={"kid": "k1"})


async def me(app: FastAPI, bearer: str) -> dict[str, Any]:
    reply = await call(app, "GET", f"{V1}/me", secret=bearer)
    assert reply.status == 200, reply.body
    return reply.json()  # type: ignore[no-any-return]


async def refused(app: FastAPI, bearer: str | None = None, *, code: str = "identity_not_linked",
                  **kwargs: Any) -> str:
    """The 403 a sign-in gets, with its code; its message."""
    reply = await call(app, "GET", f"{V1}/me", secret=bearer, **kwargs)
    assert reply.status == 403, reply.body
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", code), error
    return str(error["message"])


async def new_user(w: World, *, disabled: bool = False, platform_role: str | None = None,
                   email: str | None = None) -> tuple[str, str]:
    """(id, email) of a fresh user."""
    email = email or f"{w.unique('person')}@example.com"
    async with w.db.transaction() as tx:
        user = await repo.create_user(tx, email, platform_role=platform_role)
        if disabled:
            await repo.set_user_disabled(tx, user.id, True)
    return user.id, email


async def set_disabled(w: World, user_id: str, disabled: bool) -> None:
    async with w.db.transaction() as tx:
        await repo.set_user_disabled(tx, user_id, disabled)


async def links_of(w: World, user_id: str) -> list[tuple[str, str, str]]:
    async with w.db.read() as tx:
        return [(r.issuer, r.subject, r.method)
                for r in await sign_in_links.list_links(tx, user_id=user_id)]


async def admin_link(w: World, user_id: str, subject: str, issuer: str = ISSUER) -> dict[str, Any]:
    reply = await call(w.app, "POST", f"{V1}/users/{user_id}/sign-in-links",
                       {"issuer": issuer, "subject": subject}, secret=w.secrets["admin"])
    assert reply.status == 201, reply.body
    return reply.json()  # type: ignore[no-any-return]


# --- the first sign-in links by verified email; the link decides from then on ------------------------

async def test_a_verified_email_acts_as_its_user(world: World, oidc_app: FastAPI) -> None:
    """memberA is a stored member of team A; the IdP's groups make them a viewer of A and an
    owner of B. The stronger role per team wins; the email's case does not matter."""
    principal = await me(oidc_app, token("MemberA@Example.COM", sub="sub-1",
                                         groups=("a-viewers", "b-owners")))
    assert principal == {
        "actor": f"user:{world.ids['memberA']}", "user_id": world.ids["memberA"],
        "platform_role": None, "team_roles": {world.ids["A"]: "member", world.ids["B"]: "owner"},
        "source": CLIENT, "via": f"oidc:{ISSUER}#sub-1"}
    assert await links_of(world, world.ids["memberA"]) == [(ISSUER, "sub-1", "email")]


async def test_once_linked_the_subject_decides_not_the_email(world: World, oidc_app: FastAPI) -> None:
    user, email = await new_user(world)
    other, other_email = await new_user(world)
    subject = world.unique("sub")
    assert (await me(oidc_app, token(email, sub=subject)))["user_id"] == user
    # The IdP changed the address, or hands the other user's verified address to this person:
    # still the linked user. No email at all, or one the IdP no longer calls verified: the same.
    for claims in ({"email": other_email}, {"email": None}, {"email": email, "email_verified": False},
                   {"email": "someone-new@example.com"}):
        assert (await me(oidc_app, token(sub=subject, **claims)))["user_id"] == user
    assert await links_of(world, other) == []
    entries = await _audit(world, target_id=user)
    assert [(e.action, e.after["subject"], e.after["method"]) for e in entries] == [
        ("user.link", subject, "email")]



async def test_a_link_committed_between_two_look_ups_is_found_not_refused(
        world: World, oidc_app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """A concurrent first sign-in of the same person commits the link after this request looked
    for it (READ COMMITTED: each statement sees its own snapshot): the user found by email then
    already holds this very identity, which is this person's link, not "another identity"."""
    user, email = await new_user(world)
    subject = world.unique("sub")
    admin_link_record = await admin_link(world, user, subject)
    monkeypatch.setattr(sign_in_links, "find_link", _never_found)  # both look-ups ran before it
    assert (await me(oidc_app, token(email, sub=subject)))["user_id"] == user
    assert await links_of(world, user) == [(ISSUER, subject, admin_link_record["method"])]


async def _never_found(*_args: Any) -> None:
    return None

@pytest.mark.parametrize(("verified", "assume", "linked"), [
    (True, False, True), (False, False, False), (False, True, False), (None, False, False),
    (None, True, True), ("true", False, False), ("true", True, False),
])
async def test_only_emails_verified_as_a_json_boolean_link(world: World, jwks_file: Path,
                                                           verified: Any, assume: bool,
                                                           linked: bool) -> None:
    """``email_verified: true`` links; absent links only when the operator says the IdP verifies
    every email; false, or anything that is not a JSON boolean, never."""
    user, email = await new_user(world)
    app = app_with(world, jwks_file, assume_email_verified=assume)
    bearer = token(email, email_verified=verified, groups=("a-viewers", "ops"))
    if linked:
        assert (await me(app, bearer))["user_id"] == user
    else:
        assert "vouched for no email" in await refused(app, bearer)
        assert await links_of(world, user) == []


async def test_an_unlinked_identity_gets_no_roles_from_its_groups(world: World,
                                                                  oidc_app: FastAPI) -> None:
    """Group mappings apply only to an identity linked to an enabled user: before, an unknown
    email (or none) kept every role its groups mapped to — platform-admin included."""
    email = f"{world.unique('stranger')}@example.com"
    for bearer in (token(email, groups=("ops", "a-viewers")), token(None, groups=("ops",))):
        message = await refused(oidc_app, bearer)
        assert "not linked to a user" in message and "inferenceops users link" in message
        assert (await call(oidc_app, "GET", f"{V1}/users", secret=bearer)).status == 403
    async with world.db.read() as tx:
        with pytest.raises(NotFound):  # provisioning is off by default
            await repo.get_user_by_email(tx, email)


# --- disabling shuts every way in ------------------------------------------------------------------

async def test_a_disabled_user_is_refused_whatever_the_token_says(world: World,
                                                                 oidc_app: FastAPI) -> None:
    """The finding: a disabled user whose token maps to platform-admin and carries no verified
    email was platform-admin, and could re-enable herself. Linked or not, she is out."""
    user, email = await new_user(world, disabled=True)
    assert "disabled" in await refused(oidc_app, token(email, groups=("ops",)), code="permission_denied")
    assert await links_of(world, user) == []  # a disabled user is not linked by email either
    subject = world.unique("sub")
    await set_disabled(world, user, False)
    assert (await me(oidc_app, token(email, sub=subject)))["user_id"] == user  # linked now
    await set_disabled(world, user, True)
    for bearer in (token(None, sub=subject, groups=("ops",)),
                   token(email, sub=subject, groups=("ops",), email_verified=False),
                   token(email, sub=subject)):
        assert "disabled" in await refused(oidc_app, bearer, code="permission_denied")
        patch = await call(oidc_app, "PATCH", f"{V1}/users/{user}", {"disabled": False},
                           secret=bearer)
        assert patch.status == 403, patch.body
    async with world.db.read() as tx:
        assert (await repo.get_user(tx, user)).disabled


async def test_nobody_changes_their_own_disabled_flag_or_platform_role(world: World,
                                                                      oidc_app: FastAPI) -> None:
    user, email = await new_user(world)
    subject = world.unique("sub")
    await admin_link(world, user, subject)
    async with world.db.transaction() as tx:
        await repo.set_platform_role(tx, user, "platform-admin")
    bearer = token(email, sub=subject)
    for change in ({"disabled": True}, {"platform_role": "auditor"}, {"platform_role": None}):
        reply = await call(oidc_app, "PATCH", f"{V1}/users/{user}", change, secret=bearer)
        assert reply.status == 403, reply.body
        assert "your own disabled flag or platform role" in reply.json()["error"]["message"]
    same = await call(oidc_app, "PATCH", f"{V1}/users/{user}",
                      {"disabled": False, "platform_role": "platform-admin"}, secret=bearer)
    assert same.status == 200, same.body  # sending what is already stored changes nothing
    other, _ = await new_user(world)
    assert (await call(oidc_app, "PATCH", f"{V1}/users/{other}", {"disabled": True},
                       secret=bearer)).status == 200  # another user: what platform admins do


# --- accounts no email can claim -------------------------------------------------------------------

@pytest.mark.parametrize("platform_role", ["platform-admin", "auditor", "billing"])
async def test_a_platform_role_account_is_never_linked_by_email(world: World, oidc_app: FastAPI,
                                                                platform_role: str) -> None:
    user, email = await new_user(world, platform_role=platform_role)
    subject = world.unique("sub")
    assert "linked only by a platform admin" in await refused(oidc_app, token(email, sub=subject))
    assert await links_of(world, user) == []
    link = await admin_link(world, user, subject)  # the explicit way
    assert (link["method"], link["linked_by"]) == ("admin", world.actors["admin"])
    assert (await me(oidc_app, token(email, sub=subject)))["platform_role"] == platform_role


async def test_the_bootstrap_admin_cannot_be_claimed_by_email(world: World, oidc_app: FastAPI) -> None:
    """Its address is fixed and documented; an IdP calling it verified gets nothing."""
    user, _ = await new_user(world, platform_role="platform-admin", email=BOOTSTRAP_EMAIL)
    assert BOOTSTRAP_EMAIL.endswith(".invalid")
    await refused(oidc_app, token(BOOTSTRAP_EMAIL, groups=("ops",)))
    async with world.db.transaction() as tx:  # even were it demoted, .invalid is never linked
        await repo.set_platform_role(tx, user, None)
    await refused(oidc_app, token(BOOTSTRAP_EMAIL))
    assert await links_of(world, user) == []


async def test_a_user_linked_to_one_identity_is_not_claimed_by_another_of_its_issuer(
        world: World, oidc_app: FastAPI) -> None:
    """An IdP that recycles an address (a new employee gets a leaver's) must not hand the new
    person the old account; a second identity needs a platform admin."""
    user, email = await new_user(world)
    assert (await me(oidc_app, token(email, sub="first-" + user)))["user_id"] == user
    await refused(oidc_app, token(email, sub="second-" + user))
    await admin_link(world, user, "second-" + user)
    assert (await me(oidc_app, token(email, sub="second-" + user)))["user_id"] == user


async def test_a_platform_admin_links_and_unlinks_identities(world: World, oidc_app: FastAPI) -> None:
    user, _ = await new_user(world)
    subject = world.unique("sub")
    await refused(oidc_app, token(None, sub=subject))
    link = await admin_link(world, user, subject)
    assert (await me(oidc_app, token(None, sub=subject)))["user_id"] == user
    again = await call(world.app, "POST", f"{V1}/users/{user}/sign-in-links",
                       {"issuer": ISSUER, "subject": subject}, secret=world.secrets["admin"])
    assert again.status == 409, again.body
    listed = await call(world.app, "GET", f"{V1}/users/{user}/sign-in-links",
                        secret=world.secrets["auditor"])
    assert [entry["id"] for entry in listed.json()] == [link["id"]]
    for role in ("auditor", "billing", "ownerA"):  # only platform admins link or unlink
        denied = await call(world.app, "DELETE", f"{V1}/users/{user}/sign-in-links/{link['id']}",
                            secret=world.secrets[role])
        assert denied.status == 403, (role, denied.body)
        denied = await call(world.app, "POST", f"{V1}/users/{world.ids['ownerA']}/sign-in-links",
                            {"issuer": ISSUER, "subject": "mine"}, secret=world.secrets[role])
        assert denied.status == 403, (role, denied.body)
    elsewhere = await call(world.app, "DELETE",
                           f"{V1}/users/{world.ids['memberA']}/sign-in-links/{link['id']}",
                           secret=world.secrets["admin"])
    assert elsewhere.status == 404
    gone = await call(world.app, "DELETE", f"{V1}/users/{user}/sign-in-links/{link['id']}",
                      secret=world.secrets["admin"])
    assert gone.status == 204, gone.body
    await refused(oidc_app, token(None, sub=subject))
    entries = await _audit(world, target_id=user)
    assert [(e.action, e.actor) for e in entries] == [
        ("user.link", world.actors["admin"]), ("user.unlink", world.actors["admin"])]


async def test_a_linked_member_manages_their_own_keys_and_is_audited_as_the_user(
        world: World, oidc_app: FastAPI) -> None:
    user, email = await new_user(world)
    async with world.db.transaction() as tx:
        await repo.set_membership(tx, world.ids["A"], user, "member")
    bearer = token(email, sub="idp-" + user)
    created = await call(oidc_app, "POST", f"{V1}/keys", {"name": "laptop", "team_id": world.ids["A"],
                                                          "scopes": ["inference"]}, secret=bearer)
    assert created.status == 201, created.body
    key = created.json()
    assert key["user_id"] == user
    revoked = await call(oidc_app, "POST", f"{V1}/keys/{key['id']}/revoke", secret=bearer)
    assert revoked.status == 200
    entries = await _audit(world, target_id=key["id"])
    assert [(e.action, e.actor, e.source) for e in entries] == [
        (action, f"user:{user}", f"{CLIENT} via oidc:{ISSUER}#idp-{user}")
        for action in ("key.create", "key.revoke")]


async def test_a_linked_owner_is_refused_removing_themselves_last(world: World,
                                                                 oidc_app: FastAPI) -> None:
    reply = await call(oidc_app, "DELETE", f"{V1}/teams/{world.ids['A']}/members/{world.ids['ownerA']}",
                       secret=token("ownera@example.com"))
    assert reply.status == 409 and "add another owner first" in reply.json()["error"]["message"]


# --- provisioning ---------------------------------------------------------------------------------

async def test_provisioning_makes_and_links_the_user_once(world: World, jwks_file: Path) -> None:
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
    assert await links_of(world, user_id) == [(ISSUER, "idp-newcomer", "provisioned")]
    entries = await _audit(world, target_id=user_id)
    assert [(e.action, e.actor, e.source) for e in entries] == [
        (action, f"user:{user_id}", f"{CLIENT} via oidc:{ISSUER}#idp-newcomer")
        for action in ("user.provision", "user.link")]
    assert entries[0].after is not None and entries[0].after["email"] == email


async def test_provisioning_needs_a_verified_email(world: World, jwks_file: Path) -> None:
    app = app_with(world, jwks_file, provision_users=True)
    email = f"{world.unique('unverified')}@example.com"
    await refused(app, token(email, email_verified=False))
    async with world.db.read() as tx:
        with pytest.raises(NotFound):
            await repo.get_user_by_email(tx, email)


async def test_provisioning_never_takes_over_a_platform_role_account(world: World,
                                                                     jwks_file: Path) -> None:
    app = app_with(world, jwks_file, provision_users=True)
    user, email = await new_user(world, platform_role="auditor")
    await refused(app, token(email, groups=("ops",)))
    assert await links_of(world, user) == []


# --- the trusted proxy -----------------------------------------------------------------------------

async def test_proxy_emails_are_trusted_and_linked(world: World, jwks_file: Path) -> None:
    app = app_with(world, jwks_file, proxy=PROXY)
    headers = {"x-forwarded-email": "OwnerB@example.com", "x-forwarded-groups": "a-viewers"}
    reply = await call(app, "GET", f"{V1}/me", headers=headers)
    assert reply.json() == {
        "actor": f"user:{world.ids['ownerB']}", "user_id": world.ids["ownerB"], "platform_role": None,
        "team_roles": {world.ids["A"]: "viewer", world.ids["B"]: "owner"}, "source": CLIENT,
        "via": "proxy:OwnerB@example.com"}
    assert ("proxy", "OwnerB@example.com", "email") in await links_of(world, world.ids["ownerB"])
    _, disabled = await new_user(world, disabled=True)
    await refused(app, headers={"x-forwarded-email": disabled}, code="permission_denied")


async def test_a_proxy_user_that_is_no_email_needs_a_platform_admins_link(world: World,
                                                                         jwks_file: Path) -> None:
    app = app_with(world, jwks_file, proxy=PROXY)
    name = world.unique("ownerb")
    await refused(app, headers={"x-forwarded-email": name, "x-forwarded-groups": "ops"})
    await admin_link(world, world.ids["viewerA"], name, issuer="proxy")
    principal = (await call(app, "GET", f"{V1}/me", headers={"x-forwarded-email": name})).json()
    assert principal["user_id"] == world.ids["viewerA"] and principal["via"] == f"proxy:{name}"


@pytest.mark.parametrize("header", ["x-forwarded-email", "x-forwarded-groups"])
async def test_two_identity_headers_are_refused(world: World, jwks_file: Path, header: str) -> None:
    """Which of two counts is up to each server and proxy: the platform takes neither (400)."""
    app = app_with(world, jwks_file, proxy=PROXY)
    reply = await call(app, "GET", f"{V1}/me",
                       headers={"x-forwarded-email": "ownerb@example.com", "x-forwarded-groups": "x"},
                       repeated=[(header, "admin@example.com")])
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error", "duplicate_header", header)


async def test_two_authorization_headers_are_refused(world: World, oidc_app: FastAPI) -> None:
    reply = await call(oidc_app, "GET", f"{V1}/me", secret=world.secrets["memberA"],
                       repeated=[("authorization", f"Bearer {world.secrets['admin']}")])
    assert reply.status == 400 and reply.json()["error"]["code"] == "duplicate_header"


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
