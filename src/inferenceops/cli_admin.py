"""Operator commands against a running server's admin API: ``teams``, ``users``, ``keys``, ``grants``.

(``limits`` and ``budgets`` live in ``cli_admission``, built on the client and output helpers here.)

Like kubectl: each command is one or a few HTTP calls to ``<url>/admin/api/v1``
with ``Authorization: Bearer <admin key>``. The server is ``--url`` or
``INFERENCEOPS_URL`` (default http://127.0.0.1:8080); the key is ``--key`` or
``INFERENCEOPS_ADMIN_KEY``.

Output is an aligned table for people; ``--json`` prints the API's JSON for
scripts (a listing: every page, merged into one ``{"data": [...]}``).
Exit codes: 0 ok; 1 the server refused (``error: <its message>`` on stderr) or
could not be reached; 2 a usage error (no key, bad flags).

All HTTP goes through ``AdminClient`` (stdlib ``urllib``: no extra dependency).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

API_PREFIX = "/admin/api/v1"
DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "INFERENCEOPS_URL"
KEY_ENV = "INFERENCEOPS_ADMIN_KEY"
TIMEOUT_S = 30.0
PAGE_LIMIT = 100
SECRET_WARNING = "Store this secret now: it will not be shown again."

# ---- HTTP -------------------------------------------------------------------------------------


class CliError(Exception):
    """A failure to report as ``error: <message>`` with ``exit_code`` (``status``: the HTTP one)."""

    def __init__(self, message: str, exit_code: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


class AdminClient:
    """A small synchronous client for the admin API: JSON in, JSON out, errors as ``CliError``."""

    def __init__(self, url: str, key: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: Any = None,
                query: dict[str, Any] | None = None) -> Any:
        """The decoded JSON response (None for an empty body, e.g. 204)."""
        target = f"{self.url}{API_PREFIX}{path}"
        params = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        if params:
            target += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(target, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return self._decode(resp.read(), resp.status)
        except urllib.error.HTTPError as exc:
            raise CliError(self._error_message(exc), status=exc.code) from None
        except urllib.error.URLError as exc:
            raise CliError(self._unreachable(exc.reason)) from None
        except (TimeoutError, ConnectionError) as exc:
            raise CliError(self._unreachable(exc)) from None

    def pages(self, path: str, query: dict[str, Any] | None = None) -> list[Any]:
        """Every item of a paged listing, following ``next_after``."""
        items: list[Any] = []
        after: str | None = None
        while True:
            page = self.request("GET", path, query={**(query or {}), "limit": PAGE_LIMIT, "after": after})
            items.extend(page.get("data", []))
            after = page.get("next_after")
            if not after:
                return items

    def _decode(self, raw: bytes, status: int) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise CliError(f"{self.url} answered HTTP {status} with a body that is not JSON: "
                           f"is it an InferenceOps server?") from None

    def _error_message(self, exc: urllib.error.HTTPError) -> str:
        raw = exc.read()
        message = None
        try:
            doc = json.loads(raw)
            error = doc.get("error") if isinstance(doc, dict) else None
            if isinstance(error, dict):
                message = error.get("message")
                if error.get("param") and not str(message).startswith(f"{error['param']}:"):
                    message = f"{message} (param: {error['param']})"
        except ValueError:
            pass
        if not message:
            message = f"HTTP {exc.code} {exc.reason} from {self.url}"
        if exc.code == 401:
            message += f" [check --key / {KEY_ENV}]"
        return message

    def _unreachable(self, reason: object) -> str:
        if isinstance(reason, ConnectionRefusedError):
            return (f"cannot connect to the InferenceOps server at {self.url}: connection refused. "
                    f"Is it running? (set --url or {URL_ENV})")
        if isinstance(reason, TimeoutError):
            return f"no answer from the InferenceOps server at {self.url} within {self.timeout_s:g}s"
        return f"cannot reach the InferenceOps server at {self.url}: {reason}"


def _query_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _quote(segment: str, *, safe: str = "") -> str:
    return urllib.parse.quote(segment, safe=safe)


# ---- output -----------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) if value else "-"
    text = str(value)
    # ISO timestamps from the API, shortened for people: 2024-05-01T12:34:56.789+00:00 → 2024-05-01 12:34:56
    if len(text) >= 19 and text[4] == "-" and text[10] == "T" and text[13] == ":":
        return text[:10] + " " + text[11:19]
    return text


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as aligned columns; ``columns`` are (field, HEADER)."""
    cells = [[header for _, header in columns]]
    cells += [[_cell(row.get(field)) for field, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in cells)


def format_record(record: dict[str, Any], fields: Sequence[tuple[str, str]]) -> str:
    """One object as ``label: value`` lines."""
    width = max(len(label) for _, label in fields)
    return "\n".join(f"{label.ljust(width)}  {_cell(record.get(field))}" for field, label in fields)


def _emit_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2))


def _emit_list(items: list[Any], columns: Sequence[tuple[str, str]], as_json: bool, noun: str) -> None:
    if as_json:
        _emit_json({"data": items, "next_after": None})
    elif not items:
        typer.echo(f"no {noun}")
    else:
        typer.echo(format_table(items, columns))


def _emit_one(record: Any, fields: Sequence[tuple[str, str]], as_json: bool) -> None:
    if as_json:
        _emit_json(record)
    else:
        typer.echo(format_record(record, fields))


def _fail(message: str, exit_code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(exit_code)


TEAM_COLUMNS = (("id", "ID"), ("name", "NAME"), ("weight", "WEIGHT"), ("created_at", "CREATED"))
TEAM_FIELDS = (("id", "id"), ("name", "name"), ("weight", "weight"), ("created_at", "created"),
               ("updated_at", "updated"))
MEMBER_FIELDS = (("team_id", "team"), ("user_id", "user"), ("role", "role"), ("created_at", "since"))
USER_COLUMNS = (("id", "ID"), ("email", "EMAIL"), ("display_name", "NAME"),
                ("platform_role", "PLATFORM ROLE"), ("disabled", "DISABLED"), ("created_at", "CREATED"))
USER_FIELDS = (("id", "id"), ("email", "email"), ("display_name", "name"),
               ("platform_role", "platform role"), ("disabled", "disabled"), ("created_at", "created"))
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

# ---- shared options ---------------------------------------------------------------------------

UrlOpt = Annotated[str, typer.Option("--url", envvar=URL_ENV, show_envvar=True,
                                     help="The InferenceOps server.")]
KeyOpt = Annotated[str | None, typer.Option("--key", envvar=KEY_ENV, show_envvar=True,
                                            show_default=False,
                                            help="An API key with the admin scope.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]


def _client(url: str, key: str | None) -> AdminClient:
    if not key or not key.strip():
        _fail(f"no admin key: set {KEY_ENV} or pass --key", exit_code=2)
    if not url.startswith(("http://", "https://")):
        _fail(f"--url must start with http:// or https://, not {url!r}", exit_code=2)
    return AdminClient(url, key.strip())


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _call(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    try:
        return fn(*args, **kwargs)
    except CliError as exc:
        _fail(str(exc), exc.exit_code)


def _api(url: str, key: str | None, method: str, path: str, body: Any = None,
         query: dict[str, Any] | None = None) -> Any:
    return _call(_client(url, key).request, method, path, body, query)


def _list(url: str, key: str | None, path: str, query: dict[str, Any] | None = None) -> list[Any]:
    return _call(_client(url, key).pages, path, query)


def id_of(url: str, key: str | None, kind: str, ref: str) -> str:
    """The id of the ``kind`` row ``ref`` names (``teams``, ``models``, …): its id, else its name
    (people remember names)."""
    client = _client(url, key)
    try:
        return str(client.request("GET", f"/{kind}/{_quote(ref)}")["id"])
    except CliError as exc:
        if exc.status != 404:
            _fail(str(exc), exc.exit_code)
    for found in _call(client.pages, f"/{kind}"):
        if found.get("name") == ref:
            return str(found["id"])
    _fail(f"no {kind[:-1]} with the id or name {ref!r} (see `inferenceops {kind} list`)")


def team_id_of(url: str, key: str | None, team: str) -> str:
    return id_of(url, key, "teams", team)


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
