"""Trusted-proxy header authentication: pure, so plain function calls."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from inferenceops.admin.proxy_auth import ProxyHeaderAuthenticator
from inferenceops.errors import AuthenticationFailed
from inferenceops.signin_settings import ProxyAuthConfig

MAPPINGS = [
    {"group": "ops-admins", "platform_role": "platform-admin"},
    {"group": "auditors", "platform_role": "auditor"},
    {"group": "ml", "team": "team_ml", "role": "member"},
    {"group": "ml-leads", "team": "team_ml", "role": "owner"},
]


def config(**overrides: Any) -> ProxyAuthConfig:
    values: dict[str, Any] = {"user_header": "X-Forwarded-Email",
                              "groups_header": "x-forwarded-groups",
                              "trusted_proxies": ["10.0.0.0/8", "fd00:1::/64"],
                              "group_mappings": MAPPINGS}
    values.update(overrides)
    return ProxyAuthConfig(**values)


AUTH = ProxyHeaderAuthenticator(config())
HEADERS = {"x-forwarded-email": "ada@example.com", "X-Forwarded-Groups": "ml, auditors,,ml-leads"}


@pytest.mark.parametrize("source", ["10.1.2.3", "fd00:1::7", "[fd00:1::7]", "::ffff:10.0.0.1"])
def test_trusted_source_maps_groups(source: str) -> None:
    identity = AUTH.identify(HEADERS, peer=source)
    principal = identity.principal
    assert principal.actor == "proxy:ada@example.com"
    assert principal.platform_role == "auditor"
    assert dict(principal.team_roles) == {"team_ml": "owner"}
    assert principal.source == source and principal.user_id is None
    assert identity.groups == ("ml", "auditors", "ml-leads")
    assert identity.email == "ada@example.com" and identity.issuer is None
    assert (identity.link_issuer, identity.subject) == ("proxy", "ada@example.com")
    # The proxy is trusted, so the email it names is verified: it links to the user row.
    assert identity.email_verified is True and identity.verified_email() == "ada@example.com"


def test_trust_is_the_peers_and_the_principal_records_the_client() -> None:
    """The proxy at 10.1.2.3 forwards a client at 203.0.113.9: the client is recorded, never
    trusted; a client that names a trusted proxy as itself is refused at its own address."""
    identity = AUTH.identify(HEADERS, peer="10.1.2.3", source="203.0.113.9")
    assert identity.principal.source == "203.0.113.9"
    with pytest.raises(AuthenticationFailed, match="trusted proxies"):
        AUTH.identify(HEADERS, peer="203.0.113.9", source="10.1.2.3")


@pytest.mark.parametrize("source", [None, "", "192.168.1.5", "11.0.0.1", "fd00:2::1", "::1",
                                    "::ffff:192.168.1.5", "not-an-ip", "10.0.0.1:5555"])
def test_untrusted_source_refused(source: str | None) -> None:
    with pytest.raises(AuthenticationFailed, match="trusted proxies") as caught:
        AUTH.authenticate(HEADERS, source=source)
    assert caught.value.status == 401


@pytest.mark.parametrize("headers", [{}, {"x-forwarded-email": ""}, {"x-forwarded-email": "  "},
                                     {"x-forwarded-user": "ada"}])
def test_missing_user_header(headers: dict[str, str]) -> None:
    with pytest.raises(AuthenticationFailed, match="no x-forwarded-email header"):
        AUTH.authenticate(headers, source="10.0.0.1")


@pytest.mark.parametrize("user", ["ada\x00admin", "a" * 300])
def test_odd_user_header_refused(user: str) -> None:
    with pytest.raises(AuthenticationFailed, match="not a user name"):
        AUTH.authenticate({"x-forwarded-email": user}, source="10.0.0.1")


def test_no_groups_header_means_no_roles() -> None:
    principal = AUTH.authenticate({"X-FORWARDED-EMAIL": "bob"}, source="10.0.0.1")
    assert principal.platform_role is None and dict(principal.team_roles) == {}
    assert principal.actor == "proxy:bob"
    bob = AUTH.identify({"X-FORWARDED-EMAIL": "bob"}, peer="10.0.0.1")
    assert bob.email is None and bob.verified_email(assume_verified=True) is None  # not an email
    only_user = ProxyHeaderAuthenticator(config(groups_header=None))
    assert only_user.authenticate(HEADERS, source="10.0.0.1").platform_role is None


def test_platform_admin_wins() -> None:
    principal = AUTH.authenticate({"x-forwarded-email": "root@example.com",
                                   "x-forwarded-groups": "auditors,ops-admins"}, source="10.9.9.9")
    assert principal.is_platform_admin


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"trusted_proxies": []}, "at least 1 item"),
    ({"trusted_proxies": ["10.0.0.1/8"]}, "not a CIDR"),
    ({"trusted_proxies": ["proxy.internal"]}, "not a CIDR"),
    ({"trusted_proxies": ["0.0.0.0/0"]}, "trusts every address"),
    ({"trusted_proxies": ["::/0"]}, "trusts every address"),
    ({"user_header": "x forwarded"}, "not a valid HTTP header name"),
    ({"groups_header": "X-Forwarded-Email"}, "must differ"),
    ({"group_mappings": [{"group": "g", "team": "t", "role": "superuser"}]}, "'viewer'"),
])
def test_config_validation(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected.replace(".", r"\.")):
        config(**overrides)


def test_single_host_cidr() -> None:
    auth = ProxyHeaderAuthenticator(config(trusted_proxies=["127.0.0.1/32", "::1/128"]))
    assert auth.is_trusted("127.0.0.1") and auth.is_trusted("::1")
    assert not auth.is_trusted("127.0.0.2")
