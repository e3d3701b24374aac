"""Operator commands for a model's price history on a running server: ``prices list|set|delete``.

Same conventions as the other admin commands (``_client``): ``--url`` / ``INFERENCEOPS_URL``,
``--key`` / ``INFERENCEOPS_ADMIN_KEY``, a table for people, ``--json`` for scripts, exit 1 when
the server refuses (its message, naming the field), 2 for a usage error. Models are named by
name or id. The server checks every value (amounts, the discount, the time): the CLI sends
them as typed, so its messages are the platform file's and the API's.

    inferenceops prices list llama-70b
    inferenceops prices set llama-70b --input 0.50 --output 0.70 --from 2026-12-10T00:00:00Z
    inferenceops prices set llama-70b --input 0.30 --output 0.40 --deployment llama-70b-spot \\
        --cached-input 0.03 --batch-discount 50
    inferenceops prices delete llama-70b prc_…
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
    _list,
    _quote,
    id_of,
)

PRICE_COLUMNS = (("id", "ID"), ("deployment", "DEPLOYMENT"), ("effective_from", "FROM"),
                 ("input_per_million", "INPUT/1M"), ("output_per_million", "OUTPUT/1M"),
                 ("cached_input_per_million", "CACHED/1M"), ("batch_discount_percent", "BATCH -%"),
                 ("state", "STATE"))
PRICE_FIELDS = (("id", "id"), ("model_id", "model id"), ("deployment", "deployment"),
                ("effective_from", "from"), ("input_per_million", "input per 1M tokens"),
                ("output_per_million", "output per 1M tokens"),
                ("cached_input_per_million", "cached input per 1M tokens"),
                ("batch_discount_percent", "batch discount %"), ("state", "state"),
                ("created_at", "created"))

prices_app = typer.Typer(no_args_is_help=True, help="A model's prices over time (admin API).")
Model = Annotated[str, typer.Argument(metavar="MODEL", help="The model, by name or id.")]


def _for_people(row: dict[str, Any]) -> dict[str, Any]:
    """The model's own prices say so; "from the beginning" rather than an empty cell."""
    return {**row, "deployment": row.get("deployment") or "(model)",
            "effective_from": row.get("effective_from") or "beginning",
            "cached_input_per_million": row.get("cached_input_per_million") or "= input"}


@prices_app.command("list")
def prices_list(model: Model, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                as_json: JsonOpt = False) -> None:
    """Every price of MODEL, history included: its own first, then per deployment, by start."""
    rows = _list(url, key, f"/models/{_quote(id_of(url, key, 'models', model))}/prices")
    _emit_list(rows if as_json else [_for_people(r) for r in rows], PRICE_COLUMNS, as_json, "prices")


@prices_app.command("set")
def prices_set(
    model: Model,
    input_price: Annotated[str, typer.Option("--input", help="Input price per million tokens.")],
    output_price: Annotated[str, typer.Option("--output", help="Output price per million tokens.")],
    cached_input: Annotated[str | None, typer.Option(
        "--cached-input", help="Price per million prompt tokens the engine's cache served "
        "(default: the input price).")] = None,
    batch_discount: Annotated[str | None, typer.Option(
        "--batch-discount", help="Percent off for batch requests, 0-100 (default 0).")] = None,
    start: Annotated[str | None, typer.Option(
        "--from", help="When it starts: 2026-12-10T00:00:00Z (with its offset) or a date "
        "2026-12-10 (midnight UTC). Default: now. Never in the past.")] = None,
    deployment: Annotated[str | None, typer.Option(
        "--deployment", help="Only for the requests this deployment serves.")] = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Schedule a price for MODEL from --from (now by default); what has started stays history."""
    body: dict[str, Any] = {"input_per_million": input_price, "output_per_million": output_price}
    for field, value in (("cached_input_per_million", cached_input),
                         ("batch_discount_percent", batch_discount), ("effective_from", start),
                         ("deployment", deployment)):
        if value is not None:
            body[field] = value
    model_id = id_of(url, key, "models", model)
    row = _api(url, key, "POST", f"/models/{_quote(model_id)}/prices", body)
    _emit_one(row if as_json else _for_people(row), PRICE_FIELDS, as_json)


@prices_app.command("delete")
def prices_delete(model: Model, price_id: Annotated[str, typer.Argument(metavar="PRICE_ID")],
                  url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a price of MODEL that has not started yet (one that has is history)."""
    model_id = id_of(url, key, "models", model)
    _api(url, key, "DELETE", f"/models/{_quote(model_id)}/prices/{_quote(price_id)}")
    if as_json:
        _emit_json({"id": price_id, "deleted": True})
    else:
        typer.echo(f"deleted price {price_id} of model {model}")
