"""Operator commands for LoRA adapters on a running server: ``inferenceops adapters …``.

The conventions of ``cli.catalog`` (whose helpers these use): ``--url`` / ``--key``, tables
for people, ``--json`` for scripts, exit 1 when the server refuses and 2 for a usage error;
``create`` takes ``--file spec.yaml`` (one adapter in the platform file's format) and/or
flags, a flag winning over the file; rows are named by name or id. A team uses an adapter
once its name is granted: ``inferenceops grants put TEAM ADAPTER``, as for a model.
"""

from __future__ import annotations

from typing import Annotated

import typer

from inferenceops.cli._client import DEFAULT_URL, JsonOpt, KeyOpt, UrlOpt, _api, _list, _quote, id_of
from inferenceops.cli.catalog import (
    FileOpt,
    ManagedByOpt,
    NameOpt,
    Ref,
    _body,
    _deleted,
    _emit,
    _emit_rows,
    _show,
)

ADAPTER_COLUMNS = (("id", "ID"), ("name", "NAME"), ("base_model", "BASE MODEL"),
                   ("source", "SOURCE"), ("managed_by", "MANAGED BY"))
ADAPTER_FIELDS = (("id", "id"), ("name", "name"), ("base_model", "base model"),
                  ("source", "source"), ("description", "description"),
                  ("managed_by", "managed by"), ("created_at", "created"),
                  ("updated_at", "updated"))

adapters_app = typer.Typer(no_args_is_help=True,
                           help="LoRA adapters on the models, granted to teams like models (admin API).")
BaseModelOpt = Annotated[str | None, typer.Option("--base-model", help="The model it adapts, by name.")]
SourceOpt = Annotated[str | None, typer.Option(
    "--source", help="Where the engine loads it from (vLLM's lora_path).")]
DescriptionOpt = Annotated[str | None, typer.Option("--description", help="What it is for.")]


@adapters_app.command("list")
def adapters_list(base_model: BaseModelOpt = None, managed_by: ManagedByOpt = None,
                  url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """List adapters (team roles: those granted to their teams)."""
    rows = _list(url, key, "/adapters", {"base_model": base_model, "managed_by": managed_by})
    _emit_rows("adapters", rows, ADAPTER_COLUMNS, as_json)


@adapters_app.command("show")
def adapters_show(ref: Ref, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Show one adapter."""
    _emit("adapters", _show(url, key, "adapters", ref), ADAPTER_FIELDS, as_json)


@adapters_app.command("create")
def adapters_create(file: FileOpt = None, name: NameOpt = None, base_model: BaseModelOpt = None,
                    source: SourceOpt = None, description: DescriptionOpt = None,
                    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Register an adapter (from --file and/or flags); its base model must exist."""
    body = _body(file, {"name": name, "base_model": base_model, "source": source,
                        "description": description})
    _emit("adapters", _api(url, key, "POST", "/adapters", body), ADAPTER_FIELDS, as_json)


@adapters_app.command("update")
def adapters_update(ref: Ref, file: FileOpt = None, name: NameOpt = None,
                    base_model: BaseModelOpt = None, source: SourceOpt = None,
                    description: DescriptionOpt = None, url: UrlOpt = DEFAULT_URL,
                    key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Change the fields given."""
    adapter_id = id_of(url, key, "adapters", ref)
    body = _body(file, {"name": name, "base_model": base_model, "source": source,
                        "description": description})
    _emit("adapters", _api(url, key, "PATCH", f"/adapters/{_quote(adapter_id)}", body),
          ADAPTER_FIELDS, as_json)


@adapters_app.command("delete")
def adapters_delete(ref: Ref, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                    as_json: JsonOpt = False) -> None:
    """Delete an adapter (grants naming it stay, and apply again if it comes back)."""
    adapter_id = id_of(url, key, "adapters", ref)
    _api(url, key, "DELETE", f"/adapters/{_quote(adapter_id)}")
    _deleted("adapter", ref, adapter_id, as_json)


ADAPTER_APPS = (("adapters", adapters_app),)
