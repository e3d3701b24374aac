"""Human sign-in against real server processes, granian and uvicorn, and a real issuer on loopback.

The issuer is this test: it makes an RSA key, serves the JWKS over HTTP on
127.0.0.1, and signs tokens with it. Each server runs in two set-ups:

- ``edge``: the platform faces clients itself. The auth proxy allowed to send
  identity headers lives at 10.0.0.0/8 (not this machine), and no proxy is trusted
  with X-Forwarded-For.
- ``behind``: a proxy on this machine (127.0.0.1) fronts the platform: it may send
  identity headers and say, in X-Forwarded-For, which client it forwards.

Every request here comes from 127.0.0.1, as a client or as that proxy would.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.integration._harness import ADMIN_KEY, Gateway

pytestmark = pytest.mark.integration

SERVERS = ("granian", "uvicorn")
ISSUER = "https://idp.test/realms/ops"
AUDIENCE = "inferenceops-admin"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ADMIN = "/admin/api/v1"
FORGED = "10.0.0.5"  # inside the auth proxy's CIDR of the edge set-up
CLIENT = "203.0.113.9"  # a client behind the proxy of the behind set-up


class Issuer:
    """The JWKS of ``KEY`` over HTTP on 127.0.0.1, counted."""

    def __init__(self) -> None:
        jwks = json.dumps({"keys": [{**RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True),
                                     "kid": "k1", "use": "sig"}]}).encode()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server hook's name)
                issuer.fetches += 1
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(jwks)))
                self.end_headers()
                self.wfile.write(jwks)

            def log_message(self, *args: Any) -> None:
                return None

        self.fetches = 0
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/jwks"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def token(self, *, sub: str, email: str | None = None, verified: Any = True,
              groups: tuple[str, ...] = ()) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300,
                  "groups": list(groups), "email": email, "email_verified": verified}
        return jwt.encode({k: v for k, v in claims.items() if v is not None}, KEY,
                          algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    yield found
    found.http.shutdown()
    found.http.server_close()


@pytest.fixture(scope="module")
def gateways(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[tuple[str, str], Gateway]]:
    """Both set-ups on both servers, started together."""
    oidc = {"INFERENCEOPS_OIDC__ISSUER": ISSUER, "INFERENCEOPS_OIDC__AUDIENCE": AUDIENCE,
            "INFERENCEOPS_OIDC__JWKS_URL": issuer.url,
            "INFERENCEOPS_OIDC__GROUP_MAPPINGS": '[{"group": "ops", "platform_role": "platform-admin"}]',
            "INFERENCEOPS_PROXY_AUTH__USER_HEADER": "x-forwarded-email",
            "INFERENCEOPS_PROXY_AUTH__GROUPS_HEADER": "x-forwarded-groups"}
    setups = {"edge": {"INFERENCEOPS_PROXY_AUTH__TRUSTED_PROXIES": '["10.0.0.0/8"]'},
              "behind": {"INFERENCEOPS_PROXY_AUTH__TRUSTED_PROXIES": '["127.0.0.1/32"]',
                         "INFERENCEOPS_TRUSTED_PROXIES": "127.0.0.1/32"}}
    root = tmp_path_factory.mktemp("signin")
    started = {(server, setup): Gateway(root / f"{server}-{setup}", env={**oidc, **extra},
                                        args=("--server", server), name=f"{server}-{setup}")
               for server in SERVERS for setup, extra in setups.items()}
    try:
        for gateway in started.values():
            gateway.wait_ready()
        yield started
    finally:
        for gateway in started.values():
            gateway.stop()


class Reply:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code, self.text = status, body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.text)


def admin(gateway: Gateway, method: str, path: str, body: Any = None, *,
          bearer: str = ADMIN_KEY, headers: list[tuple[str, str]] | None = None) -> Reply:
    """One admin API call; ``headers`` may name a header twice (http.client sends each)."""
    sent = [("authorization", f"Bearer {bearer}")] if bearer else []
    data = b"" if body is None else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        conn.putrequest(method, ADMIN + path)
        for name, value in [*sent, *(headers or []), ("content-type", "application/json"),
                            ("content-length", str(len(data)))]:
            conn.putheader(name, value)
        conn.endheaders(data)
        response = conn.getresponse()
        return Reply(response.status, response.read())
    finally:
        conn.close()


def new_user(gateway: Gateway, *, platform_role: str | None = None) -> tuple[str, str]:
    email = f"person-{uuid.uuid4().hex[:8]}@example.com"
    reply = admin(gateway, "POST", "/users", {"email": email, "platform_role": platform_role})
    assert reply.status_code == 201, reply.text
    return reply.json()["id"], email


def error_of(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert {"type", "code", "message"} <= error.keys()
    return error


@pytest.mark.parametrize("server", SERVERS)
def test_a_disabled_user_stays_out_whatever_her_token_says(
        gateways: dict[tuple[str, str], Gateway], issuer: Issuer, server: str) -> None:
    """The finding: disabled, a token mapping her to platform-admin and no verified email made
    her platform-admin, and she re-enabled herself."""
    gateway = gateways[server, "edge"]
    user, _ = new_user(gateway)
    subject = f"alice-{user}"
    linked = admin(gateway, "POST", f"/users/{user}/sign-in-links",
                   {"issuer": ISSUER, "subject": subject})
    assert linked.status_code == 201, linked.text
    token = issuer.token(sub=subject, groups=("ops",))
    assert admin(gateway, "GET", "/me", bearer=token).json()["platform_role"] == "platform-admin"
    assert admin(gateway, "PATCH", f"/users/{user}", {"disabled": True}).status_code == 200
    for bearer in (token, issuer.token(sub=subject, email="x@example.com", verified="true")):
        assert error_of(admin(gateway, "GET", "/me", bearer=bearer), 403)["type"] == "permission_error"
        error_of(admin(gateway, "PATCH", f"/users/{user}", {"disabled": False}, bearer=bearer), 403)
    assert admin(gateway, "GET", f"/users/{user}").json()["disabled"] is True
    # An identity linked to nobody gets nothing from its groups either.
    error = error_of(admin(gateway, "GET", "/users", bearer=issuer.token(sub="nobody", groups=("ops",))),
                     403)
    assert error["code"] == "identity_not_linked"


@pytest.mark.parametrize("server", SERVERS)
def test_no_email_claims_the_bootstrap_admin(gateways: dict[tuple[str, str], Gateway],
                                             issuer: Issuer, server: str) -> None:
    gateway = gateways[server, "edge"]
    bootstrap = [u for u in admin(gateway, "GET", "/users?limit=500").json()["data"]
                 if u["platform_role"] == "platform-admin"]
    assert [u["email"] for u in bootstrap] == ["bootstrap@inferenceops.invalid"]
    for email in ("bootstrap@inferenceops.invalid", "admin@inferenceops.local"):
        reply = admin(gateway, "GET", "/me", bearer=issuer.token(sub=f"claim-{email}", email=email))
        assert error_of(reply, 403)["code"] == "identity_not_linked"
    assert admin(gateway, "GET", f"/users/{bootstrap[0]['id']}/sign-in-links").json() == []
    _, other_admin = new_user(gateway, platform_role="platform-admin")  # no platform-role user
    reply = admin(gateway, "GET", "/me", bearer=issuer.token(sub="claim-other", email=other_admin))
    assert error_of(reply, 403)["code"] == "identity_not_linked"


@pytest.mark.parametrize("server", SERVERS)
def test_a_client_cannot_choose_its_own_address(gateways: dict[tuple[str, str], Gateway],
                                                server: str) -> None:
    """From 127.0.0.1, X-Forwarded-For naming an address inside the auth proxy's CIDR: under
    uvicorn's default proxy handling that made this client the trusted proxy."""
    gateway = gateways[server, "edge"]
    _, email = new_user(gateway)
    forged = [("x-forwarded-for", FORGED), ("x-forwarded-email", email),
              ("x-forwarded-groups", "ops")]
    error = error_of(admin(gateway, "GET", "/me", bearer="", headers=forged), 401)
    assert error["code"] == "untrusted_proxy"
    # Nor does it choose what the audit log records: the peer, not the header.
    me = admin(gateway, "GET", "/me", headers=[("x-forwarded-for", FORGED)])
    assert me.json()["source"] == "127.0.0.1"


@pytest.mark.parametrize("server", SERVERS)
def test_a_trusted_proxy_on_this_machine_signs_people_in_and_names_the_client(
        gateways: dict[tuple[str, str], Gateway], server: str) -> None:
    """Under uvicorn's default the forwarded address replaced the proxy's, and the real proxy
    was locked out."""
    gateway = gateways[server, "behind"]
    user, email = new_user(gateway)
    headers = [("x-forwarded-for", f"198.51.100.1, {CLIENT}"), ("x-forwarded-email", email)]
    reply = admin(gateway, "GET", "/me", bearer="", headers=headers)
    assert reply.status_code == 200, reply.text
    assert (reply.json()["user_id"], reply.json()["source"]) == (user, CLIENT)
    created = admin(gateway, "POST", "/teams", {"name": f"t-{uuid.uuid4().hex[:8]}"},
                    headers=[("x-forwarded-for", CLIENT)])
    assert created.status_code == 201
    entries = admin(gateway, "GET", f"/audit?target_id={created.json()['id']}").json()["data"]
    assert [entry["source"] for entry in entries] == [CLIENT]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("header", ["x-forwarded-email", "x-forwarded-groups", "authorization"])
def test_a_repeated_identity_header_is_refused(gateways: dict[tuple[str, str], Gateway],
                                               server: str, header: str) -> None:
    gateway = gateways[server, "behind"]
    _, email = new_user(gateway)
    headers = [("x-forwarded-email", email), ("x-forwarded-groups", "viewers"),
               (header, "admin@example.com" if header != "authorization" else f"Bearer {ADMIN_KEY}")]
    bearer = ADMIN_KEY if header == "authorization" else ""
    error = error_of(admin(gateway, "GET", "/me", bearer=bearer, headers=headers), 400)
    assert (error["type"], error["code"]) == ("invalid_request_error", "duplicate_header")
