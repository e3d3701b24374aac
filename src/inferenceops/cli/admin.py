"""Operator commands against a running server's admin API: ``teams``, ``users``, ``keys``, ``grants``.

Built on the shared client, output and options of ``cli._client`` (so are
``cli.admission``, ``cli.catalog``, ``cli.apply`` and ``cli.invitations``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from inferenceops.cli._client import (
    DEFAULT_URL,
    SECRET_WARNING,
    JsonOpt,
    KeyOpt,
    UrlOpt,
    _api,
    _emit_json,
    _emit_list,
    _emit_one,
    _fail,
    _list,
    _quote,
    format_record,
    format_table,
    team_id_of,
)

TEAM_COLUMNS = (("id", "ID"), ("name", "NAME"), ("weight", "WEIGHT"), ("retention", "RETENTION"),
                ("created_at", "CREATED"))
TEAM_FIELDS = (("id", "id"), ("name", "name"), ("weight", "weight"), ("retention", "retention"),
               ("retention_days", "retention days"), ("created_at", "created"),
               ("updated_at", "updated"))
MEMBER_FIELDS = (("team_id", "team"), ("user_id", "user"), ("role", "role"), ("created_at", "since"))
USER_COLUMNS = (("id", "ID"), ("email", "EMAIL"), ("display_name", "NAME"),
                ("platform_role", "PLATFORM ROLE"), ("disabled", "DISABLED"), ("created_at", "CREATED"))
USER_FIELDS = (("id", "id"), ("email", "email"), ("display_name", "name"),
               ("platform_role", "platform role"), ("disabled", "disabled"), ("created_at", "created"))
LINK_COLUMNS = (("id", "ID"), ("issuer", "ISSUER"), ("subject", "SUBJECT"), ("method", "METHOD"),
                ("linked_by", "LINKED BY"), ("created_at", "CREATED"))
LINK_FIELDS = (("id", "id"), ("user_id", "user"), ("issuer", "issuer"), ("subject", "subject"),
               ("method", "method"), ("linked_by", "linked by"), ("created_at", "created"))
KEY_COLUMNS = (("id", "ID"), ("name", "NAME"), ("prefix", "PREFIX"), ("team_id", "TEAM"),
               ("owner", "OWNER"), ("scopes", "SCOPES"),
               ("allowed_models", "MODELS"), ("expires_at", "EXPIRES"), ("revoked_at", "REVOKED"),
               ("last_used_at", "LAST USED"))
KEY_FIELDS = (("id", "id"), ("name", "name"), ("prefix", "prefix"), ("team_id", "team"),
              ("user_id", "user"), ("service_account_id", "service account"), ("scopes", "scopes"),
              ("allowed_models", "models"), ("created_at", "created"), ("expires_at", "expires"),
              ("revoked_at", "revoked"), ("last_used_at", "last used"),
              ("rotated_from_id", "rotated from"), ("background_only", "background only"))
GRANT_COLUMNS = (("team_id", "TEAM"), ("model", "MODEL"), ("created_at", "GRANTED"))

# ---- teams ------------------------------------------------------------------------------------

teams_app = typer.Typer(no_args_is_help=True, help="Teams (on a running server's admin API).")


@teams_app.command("list")
def teams_list(url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """List teams."""
    _emit_list(_list(url, key, "/teams"), TEAM_COLUMNS, as_json, "teams")


@teams_app.command("create")
def teams_create(
    name: Annotated[str, typer.Argument(help="Unique team name.")],
    weight: Annotated[int, typer.Option(help="Fair-share weight (1 to 1000000).")] = 1,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create a team."""
    team = _api(url, key, "POST", "/teams", {"name": name, "weight": weight})
    _emit_one(team, TEAM_FIELDS, as_json)


@teams_app.command("show")
def teams_show(team_id: Annotated[str, typer.Argument(metavar="ID")],
               url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Show one team."""
    _emit_one(_api(url, key, "GET", f"/teams/{_quote(team_id)}"), TEAM_FIELDS, as_json)


@teams_app.command("delete")
def teams_delete(team_id: Annotated[str, typer.Argument(metavar="ID")],
                 url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a team with its memberships, grants, service accounts and keys."""
    _api(url, key, "DELETE", f"/teams/{_quote(team_id)}")
    if as_json:
        _emit_json({"id": team_id, "deleted": True})
    else:
        typer.echo(f"deleted team {team_id}")


@teams_app.command("set-weight")
def teams_set_weight(
    team: Annotated[str, typer.Argument(metavar="TEAM", help="The team's name or id.")],
    weight: Annotated[int, typer.Argument(metavar="N", help="Fair-share weight, 1 to 1000.")],
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Set a team's fair-share weight: its share of capacity when the queue is contended."""
    team_id = team_id_of(url, key, team)
    _emit_one(_api(url, key, "PATCH", f"/teams/{_quote(team_id)}", {"weight": weight}),
              TEAM_FIELDS, as_json)


@teams_app.command("set-retention")
def teams_set_retention(
    team: Annotated[str, typer.Argument(metavar="TEAM", help="The team's name or id.")],
    mode: Annotated[str, typer.Argument(metavar="MODE", help=(
        "none: bodies never stored (the default); store: stored redacted for --days; "
        "zero: never written anywhere, logs included."))],
    days: Annotated[int | None, typer.Option(help="Days bodies are kept (store only).")] = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Set a team's body retention (platform admins; audited)."""
    if mode not in ("none", "store", "zero"):
        _fail(f"MODE must be none, store or zero, not {mode!r}", exit_code=2)
    if (mode == "store") != (days is not None):
        _fail("--days is required with store, and only with it", exit_code=2)
    team_id = team_id_of(url, key, team)
    _emit_one(_api(url, key, "PATCH", f"/teams/{_quote(team_id)}",
                   {"retention": mode, "retention_days": days}), TEAM_FIELDS, as_json)


@teams_app.command("add-member")
def teams_add_member(
    team_id: Annotated[str, typer.Argument(metavar="TEAM_ID")],
    user: Annotated[str, typer.Argument(metavar="USER_ID_OR_EMAIL",
                                        help="The user's id, or their email (team owners "
                                             "cannot look users up, but may add them by email).")],
    role: Annotated[str, typer.Option(help="owner, member or viewer.")] = "member",
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Add a user to a team (platform admins), or change a member's role; owners invite instead."""
    who = {"email": user} if "@" in user else {"user_id": user}
    member = _api(url, key, "POST", f"/teams/{_quote(team_id)}/members", {**who, "role": role})
    _emit_one(member, MEMBER_FIELDS, as_json)


# ---- users ------------------------------------------------------------------------------------

users_app = typer.Typer(no_args_is_help=True, help="Users (on a running server's admin API).")


@users_app.command("list")
def users_list(url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """List users."""
    _emit_list(_list(url, key, "/users"), USER_COLUMNS, as_json, "users")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="Unique email address.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    platform_role: Annotated[str | None, typer.Option(
        help="platform-admin, auditor or billing.")] = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create a user."""
    body: dict[str, Any] = {"email": email, "display_name": name}
    if platform_role is not None:
        body["platform_role"] = platform_role
    _emit_one(_api(url, key, "POST", "/users", body), USER_FIELDS, as_json)


def _set_disabled(user_id: str, disabled: bool, url: str, key: str | None, as_json: bool) -> None:
    user = _api(url, key, "PATCH", f"/users/{_quote(user_id)}", {"disabled": disabled})
    _emit_one(user, USER_FIELDS, as_json)


@users_app.command("disable")
def users_disable(user_id: Annotated[str, typer.Argument(metavar="USER_ID")],
                  url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Disable a user: every way in closes (their keys, their sign-ins) within seconds."""
    _set_disabled(user_id, True, url, key, as_json)


@users_app.command("enable")
def users_enable(user_id: Annotated[str, typer.Argument(metavar="USER_ID")],
                 url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Enable a disabled user again (never yourself)."""
    _set_disabled(user_id, False, url, key, as_json)


@users_app.command("links")
def users_links(user_id: Annotated[str, typer.Argument(metavar="USER_ID")],
                url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """The OIDC / auth-proxy identities that sign in as this user."""
    links = _api(url, key, "GET", f"/users/{_quote(user_id)}/sign-in-links")
    _emit_list(links, LINK_COLUMNS, as_json, "sign-in links")


@users_app.command("link")
def users_link(
    user_id: Annotated[str, typer.Argument(metavar="USER_ID")],
    issuer: Annotated[str, typer.Option(help="The token's iss, exactly; `proxy` for the auth "
                                             "proxy's identities.")],
    subject: Annotated[str, typer.Option(help="The token's sub, or the proxy's user header.")],
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Let an identity sign in as this user (the only way for a user with a platform role)."""
    link = _api(url, key, "POST", f"/users/{_quote(user_id)}/sign-in-links",
                {"issuer": issuer, "subject": subject})
    _emit_one(link, LINK_FIELDS, as_json)


@users_app.command("unlink")
def users_unlink(user_id: Annotated[str, typer.Argument(metavar="USER_ID")],
                 link_id: Annotated[str, typer.Argument(metavar="LINK_ID")],
                 url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Remove a sign-in link: that identity signs in as nobody until linked again."""
    _api(url, key, "DELETE", f"/users/{_quote(user_id)}/sign-in-links/{_quote(link_id)}")
    if as_json:
        _emit_json({"user_id": user_id, "link_id": link_id, "removed": True})
    else:
        typer.echo(f"removed sign-in link {link_id} of user {user_id}")


# ---- keys -------------------------------------------------------------------------------------

keys_app = typer.Typer(no_args_is_help=True, help="API keys (on a running server's admin API).")


def _emit_secret(created: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit_json(created)
    else:
        typer.echo(format_record(created, KEY_FIELDS))
        typer.echo("")
        typer.echo(f"secret: {created['secret']}")
    typer.echo(f"warning: {SECRET_WARNING}", err=True)


@keys_app.command("list")
def keys_list(
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
    include_revoked: Annotated[bool, typer.Option(help="Also list revoked keys.")] = False,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """List API keys (never their secrets)."""
    items = _list(url, key, "/keys", {"team_id": team, "include_revoked": include_revoked or None})
    if not as_json:  # one OWNER column: a key belongs to a user or to a service account
        items = [{**k, "owner": k.get("user_id") or k.get("service_account_id")} for k in items]
    _emit_list(items, KEY_COLUMNS, as_json, "keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for.")],
    user: Annotated[str | None, typer.Option(help="Owner: a user id.")] = None,
    service_account: Annotated[str | None, typer.Option(help="Owner: a service account id.")] = None,
    team: Annotated[str | None, typer.Option(help="The team the key acts for.")] = None,
    scope: Annotated[list[str] | None, typer.Option(
        help="inference, batch or admin; repeat for several (default: inference).")] = None,
    model: Annotated[list[str] | None, typer.Option(
        help="Restrict the key to this model; repeat for several (default: all the team's).")] = None,
    expires_in_days: Annotated[float | None, typer.Option(min=0, help="Expire after N days.")] = None,
    background_only: Annotated[bool, typer.Option(
        "--background-only", help="Its requests always queue as background work.")] = False,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create an API key; its secret is printed once and never again."""
    if (user is None) == (service_account is None):
        _fail("give exactly one owner: --user ID or --service-account ID", exit_code=2)
    body: dict[str, Any] = {"name": name, "scopes": scope or ["inference"]}
    if user is not None:
        body["user_id"] = user
    if service_account is not None:
        body["service_account_id"] = service_account
    if team is not None:
        body["team_id"] = team
    if model:
        body["allowed_models"] = model
    if expires_in_days is not None:
        body["expires_at"] = (datetime.now(UTC) + timedelta(days=expires_in_days)).isoformat()
    if background_only:
        body["background_only"] = True
    _emit_secret(_api(url, key, "POST", "/keys", body), as_json)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(metavar="ID")],
                url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke a key: it stops working on every replica within seconds."""
    _emit_one(_api(url, key, "POST", f"/keys/{_quote(key_id)}/revoke"), KEY_FIELDS, as_json)


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(metavar="ID")],
    overlap_s: Annotated[float, typer.Option(
        "--overlap-s", min=0, help="Seconds the old key keeps working.")] = 0,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Replace a key with a new one; the new secret is printed once and never again."""
    created = _api(url, key, "POST", f"/keys/{_quote(key_id)}/rotate", {"overlap_s": overlap_s})
    _emit_secret(created, as_json)


# ---- grants -----------------------------------------------------------------------------------

grants_app = typer.Typer(no_args_is_help=True,
                         help="Which models teams may use (on a running server's admin API).")


def _grant_path(team_id: str, model: str) -> str:
    return f"/grants/{_quote(team_id)}/{_quote(model, safe='/')}"  # model names may contain '/'


@grants_app.command("list")
def grants_list(team: Annotated[str | None, typer.Option(help="Only this team's grants.")] = None,
                url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """List model grants."""
    _emit_list(_list(url, key, "/grants", {"team_id": team}), GRANT_COLUMNS, as_json, "grants")


@grants_app.command("add")
def grants_add(team_id: Annotated[str, typer.Argument(metavar="TEAM_ID")],
               model: Annotated[str, typer.Argument(metavar="MODEL")],
               url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Let a team use a model (idempotent)."""
    grant = _api(url, key, "PUT", _grant_path(team_id, model))
    if as_json:
        _emit_json(grant)
    else:
        typer.echo(format_table([grant], GRANT_COLUMNS))


@grants_app.command("remove")
def grants_remove(team_id: Annotated[str, typer.Argument(metavar="TEAM_ID")],
                  model: Annotated[str, typer.Argument(metavar="MODEL")],
                  url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Stop a team using a model."""
    _api(url, key, "DELETE", _grant_path(team_id, model))
    if as_json:
        _emit_json({"team_id": team_id, "model": model, "removed": True})
    else:
        typer.echo(f"removed grant of {model} to team {team_id}")


ADMIN_APPS = (("teams", teams_app), ("users", users_app), ("keys", keys_app), ("grants", grants_app))
