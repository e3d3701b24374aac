"""``Access`` and ``require``: the admin API's one authorization decision, case by case (no I/O).

``test_admin_api`` walks every route × role over HTTP; these pin the decision
itself, as mutmut asked (``make mutation``): where a permission holds (every
team, a team, or only the caller's own keys), 404 for what the caller cannot
read and 403 for what it can read but not change — with the exact words — and
``require`` refusing a permission no role of the caller grants, or one that
does not exist.
"""

from __future__ import annotations

from types import MappingProxyType

import pytest

from inferenceops.admin.api.deps import OWN, PERMISSIONS, TEAM, Access, require, team_scope
from inferenceops.admin.principal import AdminPrincipal
from inferenceops.errors import NotFound, PermissionDenied


def person(platform_role: str | None = None, user_id: str | None = "usr_me",
           **team_roles: str) -> AdminPrincipal:
    return AdminPrincipal(actor=f"user:{user_id}", user_id=user_id, platform_role=platform_role,
                          team_roles=MappingProxyType(team_roles))


ADMIN, AUDITOR, BILLING = person("platform-admin"), person("auditor"), person("billing")
OWNER_A = person(t_a="owner")
MEMBER_A_VIEWER_B = person(t_a="member", t_b="viewer")


@pytest.mark.parametrize(("who", "permission", "everywhere", "teams"), [
    (ADMIN, "catalog:write", True, {}),
    (AUDITOR, "audit:read", True, {}),
    (AUDITOR, "keys:write", False, {}),
    (BILLING, "budgets:read", True, {}),
    (BILLING, "members:read", False, {}),
    (OWNER_A, "keys:write", False, {"t_a": TEAM}),
    (OWNER_A, "limits:write", False, {}),
    (MEMBER_A_VIEWER_B, "keys:read", False, {"t_a": OWN, "t_b": OWN}),
    (MEMBER_A_VIEWER_B, "keys:write", False, {"t_a": OWN}),
    (MEMBER_A_VIEWER_B, "teams:read", False, {"t_a": TEAM, "t_b": TEAM}),
    (person(t_a="intern"), "teams:read", False, {}),  # an unknown role grants nothing
    (person("root"), "teams:read", False, {}),
])
def test_where_a_permission_holds(who: AdminPrincipal, permission: str, everywhere: bool,
                                  teams: dict[str, str]) -> None:
    access = Access.of(who, permission)
    assert (access.principal, access.permission) == (who, permission)
    assert (access.everywhere, dict(access.teams)) == (everywhere, teams)
    assert access.whole_teams() == {t for t, extent in teams.items() if extent == TEAM}
    assert team_scope(access) == (None if everywhere else sorted(teams))


def test_everywhere_allows_every_object_even_without_a_team() -> None:
    access = Access.of(ADMIN, "keys:write")
    assert access.allows(None) and access.allows("t_zzz", owner_user_id="usr_other",
                                                 whole_team=False)
    access.check(None, "key k_1")


def test_a_team_extent_allows_that_team_only() -> None:
    access = Access.of(OWNER_A, "keys:write")
    assert access.allows("t_a") and access.allows("t_a", owner_user_id="usr_other", whole_team=False)
    assert not access.allows("t_b") and not access.allows(None)


def test_an_own_extent_allows_only_the_callers_own_objects() -> None:
    access = Access.of(MEMBER_A_VIEWER_B, "keys:write")
    assert access.allows("t_a", owner_user_id="usr_me", whole_team=False)
    assert not access.allows("t_a", owner_user_id="usr_me")  # not the whole team
    assert not access.allows("t_a", owner_user_id="usr_other", whole_team=False)
    assert not access.allows("t_a", whole_team=False)  # an object with no owner
    assert not access.allows("t_b", owner_user_id="usr_me", whole_team=False)  # viewer there
    nobody = Access.of(person(user_id=None, t_a="member"), "keys:write")
    assert not nobody.allows("t_a", owner_user_id=None, whole_team=False)


def test_what_the_caller_cannot_read_is_404_and_what_it_can_read_but_not_change_is_403() -> None:
    member = Access.of(MEMBER_A_VIEWER_B, "keys:write")
    member.check("t_a", "key k_1", owner_user_id="usr_me", whole_team=False)
    with pytest.raises(PermissionDenied) as denied:  # a viewer in t_b reads their own keys there
        member.check("t_b", "key k_2", owner_user_id="usr_me", whole_team=False)
    assert denied.value.message == "Your roles do not allow keys:write on key k_2"
    with pytest.raises(NotFound):  # by default an object is the whole team's, not the caller's own
        member.check("t_a", "key k_1", owner_user_id="usr_me")
    with pytest.raises(NotFound) as hidden:  # someone else's key: not even readable
        member.check("t_a", "key k_3", owner_user_id="usr_other", whole_team=False)
    assert hidden.value.message == "No key k_3"
    with pytest.raises(NotFound) as elsewhere:
        member.check("t_c", "team t_c")
    assert elsewhere.value.message == "No team t_c"


def test_creating_in_a_team_is_judged_by_what_the_caller_sees_of_the_team() -> None:
    owner = Access.of(OWNER_A, "service_accounts:write")
    viewer = Access.of(MEMBER_A_VIEWER_B, "service_accounts:write")
    assert not viewer.everywhere and not viewer.teams
    owner.check("t_a", "team t_a", seen_with="teams:read")
    with pytest.raises(PermissionDenied) as denied:  # t_b is visible to them, not theirs to change
        viewer.check("t_b", "team t_b", seen_with="teams:read")
    assert denied.value.message == "Your roles do not allow service_accounts:write on team t_b"
    with pytest.raises(NotFound):
        viewer.check("t_c", "team t_c", seen_with="teams:read")


def test_a_read_permission_refused_is_404_never_403() -> None:
    access = Access.of(person(t_a="viewer"), "members:read")
    with pytest.raises(NotFound):
        access.check("t_a", "team t_a")


async def test_require_gives_the_access_or_refuses_a_permission_no_role_grants() -> None:
    dependency = require("keys:write")
    assert dependency.__name__ == "require_keys_write"
    access = await dependency(OWNER_A)
    assert isinstance(access, Access) and dict(access.teams) == {"t_a": TEAM}
    with pytest.raises(PermissionDenied) as denied:
        await dependency(AUDITOR)
    assert denied.value.message == "Your roles do not allow keys:write"
    assert (await require("audit:read")(AUDITOR)).everywhere


def test_require_refuses_a_permission_that_does_not_exist() -> None:
    with pytest.raises(ValueError) as info:
        require("keys:delete")
    assert str(info.value) == "unknown permission 'keys:delete'"
    assert all(require(p).__name__ == "require_" + p.replace(":", "_") for p in PERMISSIONS)
