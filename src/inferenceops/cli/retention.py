"""``inferenceops retained-bodies export``: the compliance export, as JSON Lines.

Pages through ``GET /admin/api/v1/retained-bodies`` (auditors and platform admins) and
writes each body as one JSON line as its page arrives, so an export of any size never
sits in memory; each page read is recorded in the server's audit log. The bodies are
stored redacted (docs/retention.md). A team's retention itself is set with
``inferenceops teams set-retention``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer

from inferenceops.cli._client import (
    DEFAULT_URL,
    PAGE_LIMIT,
    KeyOpt,
    UrlOpt,
    _admin_client,
    _call,
    team_id_of,
)

retained_app = typer.Typer(no_args_is_help=True,
                           help="Bodies kept for teams that opted in (redacted): the export.")


@retained_app.command("export")
def retained_export(
    team: Annotated[str | None, typer.Option(help="Only this team (name or id).")] = None,
    since: Annotated[str | None, typer.Option(
        help="Requests at or after this time (ISO 8601 with an offset).")] = None,
    until: Annotated[str | None, typer.Option(help="Requests before this time.")] = None,
    request_id: Annotated[str | None, typer.Option(help="Only this request id.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write here instead of standard output.")] = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
) -> None:
    """Export retained bodies as JSON Lines, oldest first."""
    client = _admin_client(url, key)
    query = {"team_id": None if team is None else team_id_of(url, key, team), "since": since,
             "until": until, "request_id": request_id, "limit": PAGE_LIMIT}
    out: TextIO = sys.stdout if output is None else output.open("w", encoding="utf-8")
    written = 0
    try:
        after: str | None = None
        while True:
            page = _call(client.request, "GET", "/retained-bodies", query={**query, "after": after})
            for body in page.get("data", []):
                out.write(json.dumps(body, ensure_ascii=False) + "\n")
                written += 1
            after = page.get("next_after")
            if not after:
                break
    finally:
        if output is not None:
            out.close()
    if output is not None:
        typer.echo(f"exported {written} retained bodies to {output}", err=True)


RETENTION_APPS = (("retained-bodies", retained_app),)
