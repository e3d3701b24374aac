"""``inferenceops usage``: a usage report from a running server, as a table, JSON or CSV.

One ``GET /admin/api/v1/usage`` (``--csv``: ``/usage.csv``) with the caller's admin key, so
the server decides what the caller may see (platform roles: everything; team owners:
their team; members and viewers: their own keys). Same conventions as ``cli_admin``:
``--url`` / ``INFERENCEOPS_URL``, ``--key`` / ``INFERENCEOPS_ADMIN_KEY``; exit 1 when the
server refuses (its message names the parameter), 2 for a usage error. Teams may be named
by name or id; the table shows team names where it can.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from inferenceops.cli._client import (
    DEFAULT_URL,
    CliError,
    JsonOpt,
    KeyOpt,
    UrlOpt,
    _admin_client,
    _call,
    _emit_json,
    _fail,
    format_table,
    team_id_of,
)

#: group_by name → (field in a row, column header)
DIMENSIONS = {"team": ("team_id", "TEAM"), "key": ("key_id", "KEY"), "model": ("model", "MODEL"),
              "deployment": ("deployment", "DEPLOYMENT"), "adapter": ("adapter", "ADAPTER")}
MEASURE_COLUMNS = (("requests", "REQUESTS"), ("prompt_tokens", "PROMPT"),
                   ("completion_tokens", "COMPLETION"), ("cached_tokens", "CACHED"),
                   ("estimated_requests", "ESTIMATED"), ("errors", "ERRORS"), ("cost", "COST"))


def usage_command(
    since: Annotated[str | None, typer.Option(
        "--from", help="Start: 2026-12-01 or 2026-12-01T10:00:00Z. Default: 30 days (hourly: "
        "24 hours) before --to.")] = None,
    until: Annotated[str | None, typer.Option(
        "--to", help="End (exclusive). Default: now, the current hour or day included.")] = None,
    hourly: Annotated[bool, typer.Option("--hourly", help="One row per hour instead of per day "
                                         "(at most 31 days).")] = False,
    by: Annotated[list[str] | None, typer.Option(
        "--by", help="Group by team, key, model, deployment, adapter (comma-separated or "
        "repeated).")] = None,
    team: Annotated[str | None, typer.Option("--team", help="Only this team (name or id).")] = None,
    key_id: Annotated[str | None, typer.Option(
        "--key-id", help="Only this API key (--key is the admin credential, as everywhere).")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    deployment: Annotated[str | None, typer.Option(help="Only this deployment.")] = None,
    adapter: Annotated[str | None, typer.Option(help="Only this adapter.")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the report as CSV.")] = False,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Requests, tokens, errors and cost per day (or hour), from the server's usage rollups."""
    if as_csv and as_json:
        _fail("give --json or --csv, not both", exit_code=2)
    query: dict[str, Any] = {
        "from": since, "to": until, "granularity": "hour" if hourly else "day",
        "group_by": ",".join(by) if by else None,
        "team_id": None if team is None else team_id_of(url, key, team), "key_id": key_id,
        "model": model, "deployment": deployment, "adapter": adapter}
    client = _admin_client(url, key)
    if as_csv:
        typer.echo(_call(client.text, "/usage.csv", query), nl=False)
        return
    report = _call(client.request, "GET", "/usage", None, query)
    if as_json:
        _emit_json(report)
        return
    typer.echo(render(report, _team_names(client, report)))


def _team_names(client: Any, report: dict[str, Any]) -> dict[str, str]:
    """{team id: name} for the teams in the report, as far as the caller may list them."""
    if "team" not in report["group_by"]:
        return {}
    try:
        return {t["id"]: t["name"] for t in client.pages("/teams")}
    except CliError:
        return {}


def render(report: dict[str, Any], team_names: dict[str, str]) -> str:
    """The report as an aligned table, a totals line and how current it is."""
    hourly = report["granularity"] == "hour"
    dims = [DIMENSIONS[name] for name in report["group_by"]]
    columns = [("start", "HOUR" if hourly else "DAY"), *dims, *MEASURE_COLUMNS]
    rows = []
    for row in report["data"]:
        shown = dict(row)
        shown["start"] = row["start"][:16].replace("T", " ") if hourly else row["start"][:10]
        if row.get("team_id") is not None:
            shown["team_id"] = team_names.get(row["team_id"], row["team_id"])
        rows.append(shown)
    totals = {**report["totals"], "start": "total"}
    lines = [format_table([*rows, totals], columns) if rows else "no usage in this range"]
    current = report.get("current_to")
    lines.append(f"{report['from'][:16].replace('T', ' ')} to {report['to'][:16].replace('T', ' ')} "
                 f"UTC, cost in {report['currency']}; "
                 + (f"rolled up to {current[:19].replace('T', ' ')} UTC" if current
                    else "not rolled up yet"))
    return "\n".join(lines)
