"""``key_power`` and ``Identity.may_use`` against the written rules, every case (no I/O).

docs/security.md states what a key may do: its scopes intersected with what its
owner's *current* role allows — the team role in the key's team for a team key,
the platform role only for a key without a team, ``member`` for a service
account's key in its team, nothing for a disabled owner. The tables below are
that text; the tests walk every combination of scopes, team, owner kind and
roles (including unknown role names) and compare the whole ``KeyPower``.
These are the rules every credential of the platform is judged by, so mutmut
runs over them (``make mutation``): each branch and each field is pinned here.
"""

from __future__ import annotations

from itertools import chain, combinations, product

import pytest

from inferenceops.platform import ApiKey, Identity, Principal
from inferenceops.platform.identity import (
    ALL_SCOPES,
    PLATFORM_ADMIN,
    PLATFORM_ROLES,
    SCOPE_ADMIN,
    SCOPE_BATCH,
    SCOPE_INFERENCE,
    SERVICE_ACCOUNT_ROLE,
    TEAM_ROLES,
    KeyPower,
    key_power,
)

#: docs/security.md, "What a key can do": the scopes each role can use.
TEAM_ROLE_CAN = {"owner": ALL_SCOPES, "member": ALL_SCOPES, "viewer": {SCOPE_ADMIN}}
PLATFORM_ROLE_CAN = {PLATFORM_ADMIN: ALL_SCOPES, "auditor": {SCOPE_ADMIN}, "billing": {SCOPE_ADMIN}}
SCOPE_SETS = [frozenset(c) for c in chain.from_iterable(
    combinations(sorted(ALL_SCOPES), n) for n in range(len(ALL_SCOPES) + 1))]
ROLES_OR_NOT = [None, "", "unknown", *TEAM_ROLES, *PLATFORM_ROLES]


def expected(scopes: frozenset[str], team: str | None, service_account: bool, enabled: bool,
             platform_role: str | None, team_role: str | None) -> KeyPower | None:
    if service_account:  # no user behind it: acts as a member of its team, never beyond it
        usable = scopes & ALL_SCOPES if team is not None else frozenset()
        return KeyPower(frozenset(usable), team_role=SERVICE_ACCOUNT_ROLE) if usable else None
    if not enabled:
        return None
    if team is None:
        usable = scopes & frozenset(PLATFORM_ROLE_CAN.get(platform_role or "", ()))
        return KeyPower(usable, platform_role=platform_role) if usable else None
    usable = scopes & frozenset(TEAM_ROLE_CAN.get(team_role or "", ()))
    return KeyPower(usable, team_role=team_role) if usable else None


def test_the_tables_match_the_roles_the_platform_knows() -> None:
    assert set(TEAM_ROLE_CAN) == set(TEAM_ROLES)
    assert set(PLATFORM_ROLE_CAN) == set(PLATFORM_ROLES)
    assert SERVICE_ACCOUNT_ROLE in TEAM_ROLES
    assert {"inference", "batch", "admin"} == ALL_SCOPES


@pytest.mark.parametrize("team", [None, "team_a"])
@pytest.mark.parametrize("service_account", [False, True])
@pytest.mark.parametrize("enabled", [True, False])
def test_key_power_is_the_scopes_the_owners_current_role_allows_in_the_keys_team(
        team: str | None, service_account: bool, enabled: bool) -> None:
    for scopes, platform_role, team_role in product(SCOPE_SETS, ROLES_OR_NOT, ROLES_OR_NOT):
        got = key_power(scopes, team, service_account=service_account, owner_enabled=enabled,
                        platform_role=platform_role, team_role=team_role)
        want = expected(scopes, team, service_account, enabled, platform_role, team_role)
        assert got == want, (sorted(scopes), platform_role, team_role)


def test_the_defaults_are_an_enabled_owner_with_no_role() -> None:
    every = frozenset(ALL_SCOPES)
    assert key_power(every, "team_a", service_account=False) is None
    assert key_power(every, None, service_account=False) is None
    assert key_power(every, "team_a", service_account=False, team_role="member") == KeyPower(
        every, team_role="member")
    assert key_power(every, None, service_account=False, platform_role=PLATFORM_ADMIN) == KeyPower(
        every, platform_role=PLATFORM_ADMIN)


def test_a_team_key_never_carries_its_owners_platform_role() -> None:
    power = key_power(frozenset(ALL_SCOPES), "team_a", service_account=False,
                      platform_role=PLATFORM_ADMIN, team_role="viewer")
    assert power == KeyPower(frozenset({SCOPE_ADMIN}), platform_role=None, team_role="viewer")
    assert key_power(frozenset(ALL_SCOPES), "team_a", service_account=False,
                     platform_role=PLATFORM_ADMIN) is None  # an admin who is not in the team


def test_a_service_accounts_key_ignores_whatever_roles_are_passed() -> None:
    power = key_power(frozenset({SCOPE_INFERENCE}), "team_a", service_account=True,
                      owner_enabled=False, platform_role=PLATFORM_ADMIN, team_role="owner")
    assert power == KeyPower(frozenset({SCOPE_INFERENCE}), platform_role=None,
                             team_role=SERVICE_ACCOUNT_ROLE)
    assert key_power(frozenset(ALL_SCOPES), None, service_account=True,
                     platform_role=PLATFORM_ADMIN) is None


def test_unknown_scopes_give_no_power() -> None:
    assert key_power(frozenset({"everything"}), "team_a", service_account=False,
                     team_role="owner") is None
    assert key_power(frozenset({"everything", SCOPE_BATCH}), "team_a", service_account=True) == \
        KeyPower(frozenset({SCOPE_BATCH}), team_role=SERVICE_ACCOUNT_ROLE)


# -- Identity.may_use: the model grant, on the data plane ----------------------------------------

ALICE = Principal("usr_alice")
ROOT = Principal("usr_root", platform_role=PLATFORM_ADMIN)
AUDITOR = Principal("usr_audit", platform_role="auditor")
GRANTS = {"team_a": ["m1", "m2"], "team_b": ["m3"]}
IDENTITY = Identity([], GRANTS)


def api_key(principal: Principal, team: str | None, models: set[str] | None = None) -> ApiKey:
    return ApiKey("k", "sk-io-k", principal, team, frozenset({SCOPE_INFERENCE}),
                  None if models is None else frozenset(models))


@pytest.mark.parametrize(("key", "usable"), [
    (api_key(ALICE, "team_a"), {"m1", "m2"}),
    (api_key(ALICE, "team_a", {"m2", "m3"}), {"m2"}),  # the key narrows; it never widens
    (api_key(ALICE, "team_b"), {"m3"}),
    (api_key(ALICE, "team_c"), set()),  # a team with no grants
    (api_key(ALICE, None), set()),  # no team and not a platform admin: nothing
    (api_key(AUDITOR, None), set()),  # reading the platform is not using its models
    (api_key(ROOT, None), {"m1", "m2", "m3", "unlisted"}),
    (api_key(ROOT, None, {"m1"}), {"m1"}),  # a platform admin's restricted key stays restricted
    (api_key(ROOT, None, set()), set()),
], ids=["team", "team-narrowed", "other-team", "no-grants", "no-team", "auditor", "admin",
        "admin-narrowed", "admin-none"])
def test_may_use_is_the_teams_grant_narrowed_by_the_key(key: ApiKey, usable: set[str]) -> None:
    for model in ("m1", "m2", "m3", "unlisted"):
        assert IDENTITY.may_use(key, model) is (model in usable), model


def test_a_key_expires_at_its_expiry_not_a_moment_later() -> None:
    key = ApiKey("k", "sk-io-k", ALICE, "team_a", frozenset(), expires_at=1000.0)
    assert not key.expired(999.999)
    assert key.expired(1000.0)
    assert not ApiKey("k", "sk-io-k", ALICE, "team_a", frozenset()).expired(10**12)


def test_a_key_meters_under_its_rotation_lineage() -> None:
    assert ApiKey("k2", "p", ALICE, "t", frozenset(), meter_id="k1").meter == "k1"
    assert ApiKey("k2", "p", ALICE, "t", frozenset()).meter == "k2"
    assert ROOT.is_platform_admin and not AUDITOR.is_platform_admin and not ALICE.is_platform_admin


def test_an_identity_carries_the_revision_it_was_built_at() -> None:
    assert Identity([], {}).revision == 0
    assert Identity([], {}, revision=42).revision == 42
