"""Operator commands for admission rules on a running server: ``limits`` and ``budgets``.

Same conventions as ``cli_admin`` (whose client and output helpers these use):
``--url`` / ``INFERENCEOPS_URL``, ``--key`` / ``INFERENCEOPS_ADMIN_KEY``, tables
for people, ``--json`` for scripts, exit 1 when the server refuses and 2 for a
usage error. Teams may be named by name or id; keys and rules by id.

A ``set`` replaces the subject's rule whole: a limit value not given becomes
unlimited, so ``limits set --team ml --rpm 60`` also clears an earlier ``--tpm``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from inferenceops.cli._client import (
    DEFAULT_URL,
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
    team_id_of,
)

LIMIT_COLUMNS = (("id", "ID"), ("scope", "SCOPE"), ("team_id", "TEAM"), ("key_id", "KEY"),
                 ("model", "MODEL"), ("rpm", "RPM"), ("tpm", "TPM"),
                 ("concurrency", "CONCURRENCY"), ("updated_at", "UPDATED"))
LIMIT_FIELDS = (("id", "id"), ("scope", "scope"), ("team_id", "team"), ("key_id", "key"),
                ("model", "model"), ("rpm", "requests/min"), ("tpm", "tokens/min"),
                ("concurrency", "concurrency"), ("created_at", "created"), ("updated_at", "updated"))
BUDGET_COLUMNS = (("id", "ID"), ("scope", "SCOPE"), ("team_id", "TEAM"), ("key_id", "KEY"),
                  ("amount", "AMOUNT"), ("currency", "CURRENCY"), ("period", "PERIOD"),
                  ("mode", "MODE"), ("updated_at", "UPDATED"))
BUDGET_FIELDS = (("id", "id"), ("scope", "scope"), ("team_id", "team"), ("key_id", "key"),
                 ("amount", "amount"), ("currency", "currency"), ("period", "period"),
                 ("mode", "mode"), ("created_at", "created"), ("updated_at", "updated"))

TeamOpt = Annotated[str | None, typer.Option("--team", help="A team, by name or id.")]
KeyIdOpt = Annotated[str | None, typer.Option(
    "--key-id", help="An API key's id (--key is the admin credential, as everywhere).")]


def _deleted(kind: str, rule_id: str, as_json: bool) -> None:
    if as_json:
        _emit_json({"id": rule_id, "deleted": True})
    else:
        typer.echo(f"deleted {kind} {rule_id}")


# ---- limits -----------------------------------------------------------------------------------

limits_app = typer.Typer(no_args_is_help=True,
                         help="Rate limits per key, team, model or team on a model (admin API).")


@limits_app.command("list")
def limits_list(
    team: TeamOpt = None, key_id: KeyIdOpt = None,
    model: Annotated[str | None, typer.Option(help="Only limits naming this model.")] = None,
    scope: Annotated[str | None, typer.Option(help="key, team, model or team_model.")] = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """List rate limits (``--team``: the team's own and its keys')."""
    team_id = None if team is None else team_id_of(url, key, team)
    items = _list(url, key, "/limits", {"team_id": team_id, "key_id": key_id, "model": model,
                                        "scope": scope})
    _emit_list(items, LIMIT_COLUMNS, as_json, "limits")


@limits_app.command("set")
def limits_set(
    team: TeamOpt = None, key_id: KeyIdOpt = None,
    model: Annotated[str | None, typer.Option(help="A model (with --team: that team on it).")] = None,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute.")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Requests in flight at once.")] = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Set the limit of one subject: --key-id, --team, --model, or --team with --model.

    Replaces the subject's limit whole: a value not given becomes unlimited.
    """
    if key_id is not None and (team is not None or model is not None):
        _fail("a key's limit applies to the key alone: give --key-id without --team/--model",
              exit_code=2)
    if key_id is None and team is None and model is None:
        _fail("say what to limit: --key-id ID, --team TEAM, --model NAME, or --team with --model",
              exit_code=2)
    if rpm is None and tpm is None and concurrency is None:
        _fail("give at least one of --rpm, --tpm, --concurrency", exit_code=2)
    body: dict[str, Any] = {"rpm": rpm, "tpm": tpm, "concurrency": concurrency}
    if key_id is not None:
        body.update(scope="key", key_id=key_id)
    else:
        team_id = None if team is None else team_id_of(url, key, team)
        scope = "team_model" if team_id and model else "team" if team_id else "model"
        body.update(scope=scope, team_id=team_id, model=model)
    _emit_one(_api(url, key, "POST", "/limits", body), LIMIT_FIELDS, as_json)


@limits_app.command("delete")
def limits_delete(limit_id: Annotated[str, typer.Argument(metavar="ID")],
                  url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a rate limit: its subject is no longer limited (by the store's rules)."""
    _api(url, key, "DELETE", f"/limits/{_quote(limit_id)}")
    _deleted("limit", limit_id, as_json)


# ---- budgets ----------------------------------------------------------------------------------

budgets_app = typer.Typer(no_args_is_help=True,
                          help="What a team or key may spend per period (admin API).")


@budgets_app.command("list")
def budgets_list(
    team: TeamOpt = None, key_id: KeyIdOpt = None,
    period: Annotated[str | None, typer.Option(help="daily, weekly, monthly or lifetime.")] = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """List budgets (``--team``: the team's own and its keys')."""
    team_id = None if team is None else team_id_of(url, key, team)
    items = _list(url, key, "/budgets", {"team_id": team_id, "key_id": key_id, "period": period})
    _emit_list(items, BUDGET_COLUMNS, as_json, "budgets")


@budgets_app.command("set")
def budgets_set(
    amount: Annotated[str, typer.Option(help="Decimal amount, e.g. 500 or 12.50.")],
    team: TeamOpt = None, key_id: KeyIdOpt = None,
    currency: Annotated[str | None, typer.Option(
        help="ISO 4217 code; must be the platform's (default: the platform's).")] = None,
    period: Annotated[str, typer.Option(help="daily, weekly, monthly or lifetime.")] = "monthly",
    mode: Annotated[str, typer.Option(help="hard refuses requests; soft only alerts.")] = "hard",
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Set the budget of a team (--team) or a key (--key-id) for one period."""
    if (team is None) == (key_id is None):
        _fail("give exactly one of --team TEAM or --key-id ID", exit_code=2)
    body: dict[str, Any] = {"amount": amount, "period": period, "mode": mode}
    if currency is not None:
        body["currency"] = currency
    if key_id is not None:
        body.update(scope="key", key_id=key_id)
    else:
        body.update(scope="team", team_id=team_id_of(url, key, team or ""))
    _emit_one(_api(url, key, "POST", "/budgets", body), BUDGET_FIELDS, as_json)


@budgets_app.command("delete")
def budgets_delete(budget_id: Annotated[str, typer.Argument(metavar="ID")],
                   url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a budget."""
    _api(url, key, "DELETE", f"/budgets/{_quote(budget_id)}")
    _deleted("budget", budget_id, as_json)


ADMISSION_APPS = (("limits", limits_app), ("budgets", budgets_app))
