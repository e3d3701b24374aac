"""Key authentication and model authorization, from an in-memory identity."""

from __future__ import annotations

import orjson
import pytest

from inferenceops.errors import AuthenticationFailed, PermissionDenied
from inferenceops.pipeline.auth import authenticate, require_scope
from inferenceops.platform import (
    ApiKey,
    Catalog,
    Deployment,
    Endpoint,
    Identity,
    KeyHasher,
    Model,
    Principal,
    Replica,
    Snapshot,
)

HASHER = KeyHasher(b"k" * 32)
ALICE = Principal("usr_alice")
ADMIN = Principal("usr_admin", platform_role="platform-admin")
BOT = Principal("sa_bot", "service_account")


def key(id_: str, principal: Principal, team: str | None, *, scopes=("inference",),
        models: set[str] | None = None, expires_at: float | None = None) -> ApiKey:
    return ApiKey(id_, f"sk-io-{id_}", principal, team, frozenset(scopes),
                  frozenset(models) if models is not None else None, expires_at)


KEYS = {
    "sk-io-alice": key("alice", ALICE, "team_a"),
    "sk-io-admin": key("admin", ADMIN, None, scopes=("inference", "admin")),
    "sk-io-bot": key("bot", BOT, "team_b", models={"m2"}),
    "sk-io-old": key("old", ALICE, "team_a", expires_at=1000.0),
    "sk-io-adminonly": key("adminonly", ADMIN, None, scopes=("admin",)),
}
IDENTITY = Identity([(HASHER.digest(s), k) for s, k in KEYS.items()],
                    {"team_a": ["m1"], "team_b": ["m1", "m2"]})
DEP = Deployment("d", "openai", "up", (Replica("r", "http://x/v1"),))
CATALOG = Catalog([Model(n, DEP, frozenset({Endpoint.CHAT}), aliases=(f"{n}-alias",))
                   for n in ("m1", "m2", "m3")])
SNAPSHOT = Snapshot(CATALOG, IDENTITY)


def auth(header: bytes | None, now: float = 2000.0) -> ApiKey:
    return authenticate(IDENTITY, HASHER, header, now)


@pytest.mark.parametrize("header", [b"Bearer sk-io-alice", b"bearer sk-io-alice",
                                    b"Bearer   sk-io-alice  "])
def test_right_key_gives_its_record(header: bytes) -> None:
    assert auth(header).id == "alice"


@pytest.mark.parametrize("header", [None, b"", b"Bearer", b"Bearer ", b"Basic sk-io-alice",
                                    b"Bearer sk-io-alic", b"Bearer sk-io-alice2", b"sk-io-alice",
                                    b"Bearer " + b"x" * 10_000])
def test_anything_else_is_refused(header: bytes | None) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        auth(header)
    assert info.value.status == 401


def test_expired_unknown_and_wrong_keys_are_indistinguishable() -> None:
    messages = set()
    for header in (b"Bearer nope", b"Bearer sk-io-old", b"Bearer sk-io-alic"):
        with pytest.raises(AuthenticationFailed) as info:
            auth(header)
        messages.add(info.value.message)
    assert len(messages) == 1
    assert auth(b"Bearer sk-io-old", now=999.0).id == "old"  # before expiry it worked


def test_digest_depends_on_the_platform_secret() -> None:
    assert KeyHasher(b"a" * 32).digest("sk-io-x") != KeyHasher(b"b" * 32).digest("sk-io-x")
    with pytest.raises(ValueError):
        KeyHasher(b"short")


def test_key_without_inference_scope_is_forbidden() -> None:
    with pytest.raises(PermissionDenied):
        require_scope(auth(b"Bearer sk-io-adminonly"), "inference")
    require_scope(auth(b"Bearer sk-io-admin"), "inference")


@pytest.mark.parametrize(("secret", "visible"), [
    ("sk-io-alice", {"m1"}),
    ("sk-io-bot", {"m2"}),            # team_b has m1 and m2, the key is restricted to m2
    ("sk-io-admin", {"m1", "m2", "m3"}),
])
def test_models_are_visible_only_when_granted(secret: str, visible: set[str]) -> None:
    k = auth(b"Bearer " + secret.encode())
    for name in ("m1", "m2", "m3"):
        assert (SNAPSHOT.visible_model(k, name) is not None) == (name in visible)
        assert (SNAPSHOT.visible_model(k, f"{name}-alias") is not None) == (name in visible)
    listed = {m["id"] for m in orjson.loads(SNAPSHOT.models_json(k))["data"]}
    assert listed == visible


def test_retiring_a_replaced_identity_frees_keys_but_keeps_grants() -> None:
    identity = Identity([(HASHER.digest(s), k) for s, k in KEYS.items()], {"team_a": ["m1"]})
    alice = auth(b"Bearer sk-io-alice")
    assert identity.retire(2) == len(KEYS) - 2
    while identity.retire(2):
        pass
    assert len(identity) == 0
    with pytest.raises(AuthenticationFailed):
        authenticate(identity, HASHER, b"Bearer sk-io-alice", 2000.0)
    assert identity.may_use(alice, "m1")
