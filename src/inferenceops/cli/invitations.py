"""Operator commands for joining teams by invitation: ``teams invite`` and ``invitations``.

A team owner invites (``inferenceops teams invite TEAM EMAIL --role member``); the
person, with their own admin-scoped key (``--key`` / ``INFERENCEOPS_ADMIN_KEY``),
lists and answers their invitations (``inferenceops invitations list|accept|decline``).
Same client, output and exit codes as ``cli_admin``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from inferenceops.cli._client import (
    DEFAULT_URL,
    JsonOpt,
    KeyOpt,
    UrlOpt,
    _api,
    _emit_list,
    _emit_one,
    _list,
    _quote,
    team_id_of,
)
from inferenceops.cli.admin import teams_app

INVITATION_COLUMNS = (("id", "ID"), ("team_name", "TEAM"), ("user_id", "USER"), ("role", "ROLE"),
                      ("state", "STATE"), ("invited_by", "INVITED BY"), ("expires_at", "EXPIRES"))
INVITATION_FIELDS = (("id", "id"), ("team_id", "team"), ("team_name", "team name"),
                     ("user_id", "user"), ("role", "role"), ("state", "state"),
                     ("invited_by", "invited by"), ("expires_at", "expires"),
                     ("decided_at", "decided"))

invitations_app = typer.Typer(no_args_is_help=True,
                              help="Your invitations to join teams (on a running server's admin API).")


@teams_app.command("invite")
def teams_invite(
    team: Annotated[str, typer.Argument(metavar="TEAM", help="The team's name or id.")],
    user: Annotated[str, typer.Argument(metavar="EMAIL_OR_USER_ID")],
    role: Annotated[str, typer.Option(help="owner, member or viewer.")] = "member",
    expires_in_s: Annotated[int | None, typer.Option(help="Seconds it can be accepted "
                                                           "(default 7 days).")] = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Invite someone into a team with a role; they join when they accept."""
    body: dict[str, object] = {"email": user} if "@" in user else {"user_id": user}
    body["role"] = role
    if expires_in_s is not None:
        body["expires_in_s"] = expires_in_s
    team_id = team_id_of(url, key, team)
    _emit_one(_api(url, key, "POST", f"/teams/{_quote(team_id)}/invitations", body),
              INVITATION_FIELDS, as_json)


@teams_app.command("invitations")
def teams_invitations(
    team: Annotated[str, typer.Argument(metavar="TEAM", help="The team's name or id.")],
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """A team's open invitations."""
    team_id = team_id_of(url, key, team)
    _emit_list(_list(url, key, f"/teams/{_quote(team_id)}/invitations"), INVITATION_COLUMNS,
               as_json, "invitations")


@invitations_app.command("list")
def invitations_list(url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Your open invitations."""
    _emit_list(_list(url, key, "/invitations"), INVITATION_COLUMNS, as_json, "invitations")


@invitations_app.command("accept")
def invitations_accept(
    invitation_id: Annotated[str, typer.Argument(metavar="INVITATION_ID")],
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Join the team with the role you were offered."""
    _emit_one(_api(url, key, "POST", f"/invitations/{_quote(invitation_id)}/accept"),
              INVITATION_FIELDS, as_json)


@invitations_app.command("decline")
def invitations_decline(
    invitation_id: Annotated[str, typer.Argument(metavar="INVITATION_ID")],
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Decline an invitation."""
    _emit_one(_api(url, key, "POST", f"/invitations/{_quote(invitation_id)}/decline"),
              INVITATION_FIELDS, as_json)


INVITATION_APPS = (("invitations", invitations_app),)
