"""``inferenceops apply -f FILE``: make a running server's catalog match a platform file.

One ``POST /admin/api/v1/apply`` (``admin.api.routes_apply``) with the file's text; the server
validates it exactly as ``serve --config`` would and applies it all or nothing. Same
conventions as ``cli_admin`` (whose client and helpers this uses): ``--url`` /
``INFERENCEOPS_URL``, ``--key`` / ``INFERENCEOPS_ADMIN_KEY``, ``--json`` for scripts.

Exit codes: 0 applied (also when nothing had to change) or planned (``--dry-run``); 1 the
server refused — an invalid file (its message names the line and the field), a conflict
(nothing was applied) — or could not be reached; 2 a usage error (no such file, no key).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from inferenceops.cli._client import DEFAULT_URL, JsonOpt, KeyOpt, UrlOpt, _api, _emit_json, _fail

STDIN = "-"
#: Top-level keys of a platform file that ``apply`` validates but does not store.
NOT_APPLIED = ("teams", "limits", "budgets")


def apply_command(
    file: Annotated[str, typer.Option("--file", "-f", metavar="FILE",
                                      help="The platform YAML; '-' reads it from stdin.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the changes; write nothing.")] = False,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Make the server's providers, deployments and models match a platform file.

    Idempotent, all or nothing. Admin-API rows the file does not name are left alone.

    The file's teams, limits and budgets are not applied: the server reads those from its --config.
    """
    text, source = _read(file)
    reply = _api(url, key, "POST", "/apply", {"file": text, "source": source},
                 query={"dry_run": dry_run})
    if as_json:
        _emit_json(reply)
    else:
        typer.echo(reply["summary"])
        if reply["dry_run"] and reply["changes"]:
            typer.echo("(dry run: nothing was written)")
    unapplied = _admission_sections(text)
    if unapplied:
        typer.echo(f"note: {', '.join(unapplied)} in {source} are not applied: the serving process "
                   "reads them from its own --config file", err=True)


def _read(file: str) -> tuple[str, str]:
    """(the file's text, its name for the server's messages); a usage error if unreadable."""
    if file == STDIN:
        return sys.stdin.read(), "<stdin>"
    path = Path(file)
    try:
        return path.read_text(encoding="utf-8"), file
    except FileNotFoundError:
        _fail(f"--file: no such file: {file}", exit_code=2)
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"--file: cannot read {file}: {exc}", exit_code=2)


def _admission_sections(text: str) -> list[str]:
    """The non-empty admission sections of a file the server accepted (for a note)."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    return [name for name in NOT_APPLIED if isinstance(data, dict) and data.get(name)]
