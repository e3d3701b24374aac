"""``inferenceops chargeback``: self-hosted deployments' GPU cost shared among teams, as a table,
JSON or CSV.

One ``GET /admin/api/v1/chargeback`` (``--csv``: ``/chargeback.csv``; by hour one per page of
the JSON, joined) with the caller's admin key, so the server decides what the caller may see
(platform roles: every line, idle cost and each deployment's total; team owners: their teams'
lines). Same conventions as ``usage``: ``--url`` / ``INFERENCEOPS_URL``, ``--key`` /
``INFERENCEOPS_ADMIN_KEY``; exit 1 when the server refuses (its message names the parameter),
2 for a usage error.
"""

from __future__ import annotations

from collections.abc import Callable
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
from inferenceops.metering.chargeback_report import money

COLUMNS = (("deployment", "DEPLOYMENT"), ("team", "TEAM"), ("cost", "COST"),
           ("share_percent", "SHARE %"), ("work", "WORK"), ("requests", "REQUESTS"),
           ("prompt_tokens", "PROMPT"), ("completion_tokens", "COMPLETION"),
           ("cached_tokens", "CACHED"))


def chargeback_command(
    since: Annotated[str | None, typer.Option(
        "--from", help="Start: 2026-12-01 or 2026-12-01T10:00:00Z. Default: 30 days (hourly: "
        "24 hours) before --to.")] = None,
    until: Annotated[str | None, typer.Option(
        "--to", help="End (exclusive). Default: now (hours count as far as they have passed).")] = None,
    by: Annotated[str, typer.Option(
        "--by", help="period (one line per team and deployment), day or hour (at most 31 "
        "days).")] = "period",
    spread_idle: Annotated[bool, typer.Option(
        "--spread-idle", help="Chargeback: the idle cost spread over the teams by their work "
        "(default: showback, idle cost on its own line).")] = False,
    team: Annotated[str | None, typer.Option("--team", help="Only this team (name or id).")] = None,
    deployment: Annotated[str | None, typer.Option(help="Only this deployment.")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the report as CSV.")] = False,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """What each self-hosted deployment's GPUs cost, and each team's share of it."""
    if as_csv and as_json:
        _fail("give --json or --csv, not both", exit_code=2)
    query: dict[str, Any] = {
        "from": since, "to": until, "granularity": by,
        "view": "chargeback" if spread_idle else "showback",
        "team_id": None if team is None else team_id_of(url, key, team), "deployment": deployment}
    client = _admin_client(url, key)
    if as_csv:
        typer.echo(_call(client.text, "/chargeback.csv", query), nl=False)
        return
    report = whole_report(lambda page: _call(client.request, "GET", "/chargeback", None, page),
                          query)
    if as_json:
        _emit_json(report)
        return
    try:
        names = {t["id"]: t["name"] for t in client.pages("/teams")}
    except CliError:
        names = {}
    typer.echo(render(report, names))


def whole_report(fetch: Callable[[dict[str, Any]], Any], query: dict[str, Any]) -> Any:
    """The report, every page of it: by hour the JSON comes in pages (``next_after``), joined
    here into one document (lines and deployment buckets in page order, totals summed)."""
    report = fetch(query)
    while report.get("next_after"):
        page = fetch({**query, "after": report["next_after"]})
        report["data"] += page["data"]
        report["deployments"] += page["deployments"]
        totals = report["totals"]
        totals["cost_cents"] += page["totals"]["cost_cents"]
        totals["idle_cost_cents"] += page["totals"]["idle_cost_cents"]
        totals["cost"] = money(totals["cost_cents"])
        report["next_after"] = page["next_after"]
    return report


def render(report: dict[str, Any], team_names: dict[str, str]) -> str:
    """The report as an aligned table (a line per team, and idle), a totals line, and its range."""
    grain = report["granularity"]
    columns: list[tuple[str, str]] = list(COLUMNS)
    if grain != "period":
        columns.insert(0, ("start", "HOUR" if grain == "hour" else "DAY"))
    rows = []
    for line in report["data"]:
        shown = dict(line)
        shown["start"] = line["start"][:16].replace("T", " ") if grain == "hour" else line["start"][:10]
        team = line["team_id"]
        shown["team"] = ("(idle)" if line["kind"] == "idle" else "(no team)" if team is None
                         else team_names.get(team, team))
        rows.append(shown)
    totals = report["totals"]
    lines = [format_table(rows, columns) if rows else "no self-hosted deployment declares a "
             "gpu_cost, or none is visible to you"]
    lines.append(f"total {totals['cost']} {report['currency']}, idle "
                 f"{totals['idle_cost_cents'] / 100:.2f} ({report['view']})")
    current = report.get("current_to")
    lines.append(f"{report['from'][:16].replace('T', ' ')} to {report['to'][:16].replace('T', ' ')} "
                 "UTC; " + (f"usage rolled up to {current[:19].replace('T', ' ')} UTC" if current
                            else "usage not rolled up yet"))
    return "\n".join(lines)
