"""What every operator command shares: the admin API client, the output, the common options.

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
        return self._decode(*self._send(method, path, body, query, "application/json"))

    def text(self, path: str, query: dict[str, Any] | None = None, *,
             accept: str = "text/csv") -> str:
        """A ``GET`` whose answer is text (a CSV export), as it came."""
        raw, _ = self._send("GET", path, None, query, accept)
        return raw.decode("utf-8", errors="replace")

    def _send(self, method: str, path: str, body: Any, query: dict[str, Any] | None,
              accept: str) -> tuple[bytes, int]:
        target = f"{self.url}{API_PREFIX}{path}"
        params = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        if params:
            target += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.key}", "Accept": accept}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(target, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return resp.read(), resp.status
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


# ---- shared options ---------------------------------------------------------------------------

UrlOpt = Annotated[str, typer.Option("--url", envvar=URL_ENV, show_envvar=True,
                                     help="The InferenceOps server.")]
KeyOpt = Annotated[str | None, typer.Option("--key", envvar=KEY_ENV, show_envvar=True,
                                            show_default=False,
                                            help="An API key with the admin scope.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]


def _admin_client(url: str, key: str | None) -> AdminClient:
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
    return _call(_admin_client(url, key).request, method, path, body, query)


def _list(url: str, key: str | None, path: str, query: dict[str, Any] | None = None) -> list[Any]:
    return _call(_admin_client(url, key).pages, path, query)


def id_of(url: str, key: str | None, kind: str, ref: str) -> str:
    """The id of the ``kind`` row ``ref`` names (``teams``, ``models``, …): its id, else its name
    (people remember names)."""
    client = _admin_client(url, key)
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

