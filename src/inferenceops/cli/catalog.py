"""Operator commands for the model catalog on a running server: ``providers``, ``deployments``, ``models``
(and ``prices``, a model's price history: ``cli.prices``).

Same conventions as ``cli_admin`` (whose client and output helpers these use): ``--url`` /
``INFERENCEOPS_URL``, ``--key`` / ``INFERENCEOPS_ADMIN_KEY``, tables for people, ``--json``
for scripts, exit 1 when the server refuses and 2 for a usage error. Rows are named by name
or id.

``create`` and ``update`` take ``--file spec.yaml`` — one provider, deployment or model in the
platform YAML's format (JSON is YAML too) — and/or flags for the common fields; a flag wins
over the file. ``update`` sends only what was given. A provider's API key is never a flag
(flags end up in shell history and process listings): ``providers set-key`` reads it from
stdin when piped, else from a hidden prompt.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

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
    id_of,
)
from inferenceops.cli.prices import prices_app

PROVIDER_COLUMNS = (("id", "ID"), ("name", "NAME"), ("base_url", "BASE URL"), ("dialect", "DIALECT"),
                    ("has_api_key", "KEY STORED"), ("api_key_env", "KEY ENV"),
                    ("managed_by", "MANAGED BY"))
PROVIDER_FIELDS = (("id", "id"), ("name", "name"), ("base_url", "base url"), ("dialect", "dialect"),
                   ("has_api_key", "api key stored"), ("api_key_env", "api key env"),
                   ("managed_by", "managed by"), ("created_at", "created"), ("updated_at", "updated"))
DEPLOYMENT_COLUMNS = (("id", "ID"), ("name", "NAME"), ("engine", "ENGINE"),
                      ("served_model", "SERVED MODEL"), ("provider", "PROVIDER"),
                      ("replicas", "REPLICAS"), ("capacity", "CAPACITY"), ("managed_by", "MANAGED BY"))
DEPLOYMENT_FIELDS = (("id", "id"), ("name", "name"), ("engine", "engine"),
                     ("served_model", "served model"), ("provider", "provider"),
                     ("profile", "profile"), ("replicas", "replicas"), ("seed", "seed"),
                     ("api_key_env", "api key env"), ("timeouts", "timeouts"),
                     ("max_connections", "max connections"), ("capacity", "capacity"),
                     ("queue", "queue"), ("managed_by", "managed by"), ("created_at", "created"),
                     ("updated_at", "updated"))
MODEL_COLUMNS = (("id", "ID"), ("name", "NAME"), ("deployment", "DEPLOYMENT"), ("type", "TYPE"),
                 ("aliases", "ALIASES"), ("price", "PRICE IN/OUT PER 1M"),
                 ("max_output_tokens", "MAX OUTPUT"), ("managed_by", "MANAGED BY"))
MODEL_FIELDS = (("id", "id"), ("name", "name"), ("deployment", "deployment"), ("type", "type"),
                ("aliases", "aliases"), ("price", "price in/out per 1M tokens"),
                ("max_output_tokens", "max output tokens"), ("managed_by", "managed by"),
                ("created_at", "created"), ("updated_at", "updated"))

FileOpt = Annotated[Path | None, typer.Option(
    "--file", "-f", help="One spec in the platform YAML's format (YAML or JSON); flags win over it.")]
Ref = Annotated[str, typer.Argument(metavar="NAME|ID")]
NameOpt = Annotated[str | None, typer.Option("--name", help="Unique name.")]
ManagedByOpt = Annotated[str | None, typer.Option(
    "--managed-by", help="Only rows managed by this (e.g. config:/etc/inferenceops/platform.yaml).")]


# ---- helpers ----------------------------------------------------------------------------------

def _spec_file(path: Path | None) -> dict[str, Any]:
    """The mapping in ``--file`` (empty without one); a usage error (exit 2) if unreadable."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"--file: cannot read {path}: {exc}", exit_code=2)
    except yaml.YAMLError as exc:
        _fail(f"--file: {path} is not valid YAML or JSON: {exc}", exit_code=2)
    if not isinstance(data, dict):
        _fail(f"--file: {path} must hold one spec (a mapping of its fields), not "
              f"{type(data).__name__}", exit_code=2)
    return data


def _body(path: Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The file's fields, then the flags that were given."""
    return {**_spec_file(path), **{k: v for k, v in flags.items() if v is not None}}


def _show(url: str, key: str | None, kind: str, ref: str) -> Any:
    return _api(url, key, "GET", f"/{kind}/{_quote(id_of(url, key, kind, ref))}")


def _deleted(kind: str, ref: str, row_id: str, as_json: bool) -> None:
    if as_json:
        _emit_json({"id": row_id, "deleted": True})
    else:
        typer.echo(f"deleted {kind} {ref}")


def _for_people(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """Nested values as short text for tables (``--json`` prints them as the API sent them)."""
    out = dict(row)
    if kind == "deployments":
        replicas = row.get("replicas")
        out["replicas"] = ",".join(r["url"] for r in replicas) if isinstance(replicas, list) else (
            replicas if replicas is not None else "default")
        for field in ("timeouts", "queue"):
            if isinstance(row.get(field), dict):
                out[field] = " ".join(f"{k}={v}" for k, v in row[field].items())
    if kind == "models" and isinstance(row.get("price"), dict):
        out["price"] = f"{row['price']['input_per_million']}/{row['price']['output_per_million']}"
        if row.get("prices"):
            out["price"] += f" (+{len(row['prices'])} more: prices list)"
    return out


def _emit(kind: str, row: Any, fields: Any, as_json: bool) -> None:
    _emit_one(row if as_json else _for_people(kind, row), fields, as_json)


def _emit_rows(kind: str, rows: list[Any], columns: Any, as_json: bool) -> None:
    _emit_list(rows if as_json else [_for_people(kind, r) for r in rows], columns, as_json, kind)


def read_secret(prompt: str) -> str:
    """A secret from stdin when piped (its surrounding whitespace dropped), else a hidden prompt."""
    if sys.stdin is None or not sys.stdin.isatty():
        secret = sys.stdin.read() if sys.stdin is not None else ""
    else:
        secret = typer.prompt(prompt, hide_input=True)
    secret = secret.strip()
    if not secret:
        _fail("no API key given: pipe it on stdin or type it at the prompt", exit_code=2)
    return secret


# ---- providers --------------------------------------------------------------------------------

providers_app = typer.Typer(no_args_is_help=True,
                            help="Upstream providers and their API keys (admin API).")
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="API root, e.g. https://api.openai.com/v1.")]
DialectOpt = Annotated[str | None, typer.Option("--dialect", help="The wire protocol (openai).")]
KeyEnvOpt = Annotated[str | None, typer.Option(
    "--api-key-env", help="Environment variable holding the upstream key (instead of a stored key).")]


@providers_app.command("list")
def providers_list(dialect: DialectOpt = None, managed_by: ManagedByOpt = None,
                   url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """List providers (never their keys)."""
    rows = _list(url, key, "/providers", {"dialect": dialect, "managed_by": managed_by})
    _emit_rows("providers", rows, PROVIDER_COLUMNS, as_json)


@providers_app.command("show")
def providers_show(ref: Ref, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                   as_json: JsonOpt = False) -> None:
    """Show one provider."""
    _emit("providers", _show(url, key, "providers", ref), PROVIDER_FIELDS, as_json)


@providers_app.command("create")
def providers_create(file: FileOpt = None, name: NameOpt = None, base_url: BaseUrlOpt = None,
                     dialect: DialectOpt = None, api_key_env: KeyEnvOpt = None,
                     url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Create a provider (store its key afterwards with `providers set-key`)."""
    body = _body(file, {"name": name, "base_url": base_url, "dialect": dialect,
                        "api_key_env": api_key_env})
    if "api_key" in body:
        _fail("--file: a provider's API key is not read from files; use `providers set-key`",
              exit_code=2)
    _emit("providers", _api(url, key, "POST", "/providers", body), PROVIDER_FIELDS, as_json)


@providers_app.command("update")
def providers_update(ref: Ref, file: FileOpt = None, name: NameOpt = None,
                     base_url: BaseUrlOpt = None, dialect: DialectOpt = None,
                     api_key_env: KeyEnvOpt = None, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                     as_json: JsonOpt = False) -> None:
    """Change the fields given (from --file and flags); the rest stay."""
    body = _body(file, {"name": name, "base_url": base_url, "dialect": dialect,
                        "api_key_env": api_key_env})
    provider_id = id_of(url, key, "providers", ref)
    _emit("providers", _api(url, key, "PATCH", f"/providers/{_quote(provider_id)}", body),
          PROVIDER_FIELDS, as_json)


@providers_app.command("delete")
def providers_delete(ref: Ref, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                     as_json: JsonOpt = False) -> None:
    """Delete a provider no deployment uses."""
    provider_id = id_of(url, key, "providers", ref)
    _api(url, key, "DELETE", f"/providers/{_quote(provider_id)}")
    _deleted("provider", ref, provider_id, as_json)


@providers_app.command("set-key")
def providers_set_key(ref: Ref, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                      as_json: JsonOpt = False) -> None:
    """Store a provider's API key: read from stdin (piped) or a hidden prompt, stored encrypted.

    The key is never a flag, and never shown again.
    """
    provider_id = id_of(url, key, "providers", ref)
    secret = read_secret(f"API key for provider {ref}")
    reply = _api(url, key, "PUT", f"/providers/{_quote(provider_id)}/api-key", {"api_key": secret})
    _emit("providers", reply, PROVIDER_FIELDS, as_json)


@providers_app.command("clear-key")
def providers_clear_key(ref: Ref, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                        as_json: JsonOpt = False) -> None:
    """Forget a provider's stored API key."""
    provider_id = id_of(url, key, "providers", ref)
    _api(url, key, "DELETE", f"/providers/{_quote(provider_id)}/api-key")
    if as_json:
        _emit_json({"id": provider_id, "has_api_key": False})
    else:
        typer.echo(f"cleared the API key of provider {ref}")


# ---- deployments ------------------------------------------------------------------------------

deployments_app = typer.Typer(no_args_is_help=True,
                              help="Deployments: engines serving a model (admin API).")
EngineOpt = Annotated[str | None, typer.Option("--engine", help="simulator or openai.")]
ProviderOpt = Annotated[str | None, typer.Option("--provider", help="A provider, by name (openai engine).")]


def _deployment_flags(name: str | None, engine: str | None, served_model: str | None,
                      provider: str | None, profile: str | None, replicas: int | None,
                      replica_url: list[str] | None, capacity: int | None,
                      api_key_env: str | None) -> dict[str, Any]:
    if replicas is not None and replica_url:
        _fail("give --replicas N (a simulator) or --replica-url URL (openai), not both", exit_code=2)
    return {"name": name, "engine": engine, "served_model": served_model, "provider": provider,
            "profile": profile, "capacity": capacity, "api_key_env": api_key_env,
            "replicas": [{"url": u} for u in replica_url] if replica_url else replicas}


ServedOpt = Annotated[str | None, typer.Option("--served-model", help="The name the engine answers to.")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="Simulator profile.")]
ReplicasOpt = Annotated[int | None, typer.Option("--replicas", min=1, help="Simulated replicas.")]
ReplicaUrlOpt = Annotated[list[str] | None, typer.Option(
    "--replica-url", help="An OpenAI-compatible replica's URL; repeat for several.")]
CapacityOpt = Annotated[int | None, typer.Option("--capacity", min=1, help="Requests sent at once.")]


@deployments_app.command("list")
def deployments_list(engine: EngineOpt = None, provider: ProviderOpt = None,
                     managed_by: ManagedByOpt = None, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                     as_json: JsonOpt = False) -> None:
    """List deployments."""
    rows = _list(url, key, "/deployments", {"engine": engine, "provider": provider,
                                            "managed_by": managed_by})
    _emit_rows("deployments", rows, DEPLOYMENT_COLUMNS, as_json)


@deployments_app.command("show")
def deployments_show(ref: Ref, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                     as_json: JsonOpt = False) -> None:
    """Show one deployment."""
    _emit("deployments", _show(url, key, "deployments", ref), DEPLOYMENT_FIELDS, as_json)


@deployments_app.command("create")
def deployments_create(
    file: FileOpt = None, name: NameOpt = None, engine: EngineOpt = None,
    served_model: ServedOpt = None, provider: ProviderOpt = None, profile: ProfileOpt = None,
    replicas: ReplicasOpt = None, replica_url: ReplicaUrlOpt = None, capacity: CapacityOpt = None,
    api_key_env: KeyEnvOpt = None, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a deployment (from --file and/or flags)."""
    body = _body(file, _deployment_flags(name, engine, served_model, provider, profile, replicas,
                                         replica_url, capacity, api_key_env))
    _emit("deployments", _api(url, key, "POST", "/deployments", body), DEPLOYMENT_FIELDS, as_json)


@deployments_app.command("update")
def deployments_update(
    ref: Ref, file: FileOpt = None, name: NameOpt = None, engine: EngineOpt = None,
    served_model: ServedOpt = None, provider: ProviderOpt = None, profile: ProfileOpt = None,
    replicas: ReplicasOpt = None, replica_url: ReplicaUrlOpt = None, capacity: CapacityOpt = None,
    api_key_env: KeyEnvOpt = None, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the fields given; the result must still be a valid deployment."""
    body = _body(file, _deployment_flags(name, engine, served_model, provider, profile, replicas,
                                         replica_url, capacity, api_key_env))
    deployment_id = id_of(url, key, "deployments", ref)
    reply = _api(url, key, "PATCH", f"/deployments/{_quote(deployment_id)}", body)
    _emit("deployments", reply, DEPLOYMENT_FIELDS, as_json)


@deployments_app.command("delete")
def deployments_delete(ref: Ref, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                       as_json: JsonOpt = False) -> None:
    """Delete a deployment no model uses."""
    deployment_id = id_of(url, key, "deployments", ref)
    _api(url, key, "DELETE", f"/deployments/{_quote(deployment_id)}")
    _deleted("deployment", ref, deployment_id, as_json)


REPLICA_COLUMNS = (("id", "REPLICA"), ("drained", "DRAINED"), ("state", "BREAKER"),
                   ("weight", "WEIGHT"), ("streams_in_flight", "STREAMS"),
                   ("last_failure", "LAST FAILURE"))
ReplicaArg = Annotated[str, typer.Argument(metavar="REPLICA",
                                           help="A replica id, e.g. chat-1 (see 'replicas').")]


def _emit_replicas(reply: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit_json(reply)
        return
    rows = [{"id": r["id"], "drained": "yes" if r["drained"] else "no",
             **{k: (r["health"] or {}).get(k, "-") for k in
                ("state", "weight", "streams_in_flight", "last_failure")}}
            for r in reply["replicas"]]
    _emit_list(rows, REPLICA_COLUMNS, False, "replicas")


@deployments_app.command("replicas")
def deployments_replicas(ref: Ref, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                         as_json: JsonOpt = False) -> None:
    """A deployment's replicas: drained or not, and their health as the answering server sees it."""
    deployment_id = id_of(url, key, "deployments", ref)
    _emit_replicas(_api(url, key, "GET", f"/deployments/{_quote(deployment_id)}/replicas"),
                   as_json)


@deployments_app.command("drain")
def deployments_drain(ref: Ref, replica: ReplicaArg, url: UrlOpt = DEFAULT_URL,
                      key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Send no new work to a replica (its in-flight work finishes), on every server."""
    deployment_id = id_of(url, key, "deployments", ref)
    _emit_replicas(_api(url, key, "POST", f"/deployments/{_quote(deployment_id)}/replicas/"
                        f"{_quote(replica)}/drain"), as_json)


@deployments_app.command("undrain")
def deployments_undrain(ref: Ref, replica: ReplicaArg, url: UrlOpt = DEFAULT_URL,
                        key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Send new work to a drained replica again."""
    deployment_id = id_of(url, key, "deployments", ref)
    _emit_replicas(_api(url, key, "POST", f"/deployments/{_quote(deployment_id)}/replicas/"
                        f"{_quote(replica)}/undrain"), as_json)


# ---- models -----------------------------------------------------------------------------------

models_app = typer.Typer(no_args_is_help=True, help="The models clients call, by name (admin API).")
DeploymentOpt = Annotated[str | None, typer.Option("--deployment", help="A deployment, by name.")]
TypeOpt = Annotated[str | None, typer.Option("--type", help="chat or embedding.")]
AliasOpt = Annotated[list[str] | None, typer.Option(
    "--alias", help="Another name clients may use; repeat for several (replaces the list).")]
PriceOpt = Annotated[str | None, typer.Option(help="Price per million tokens, decimal text.")]
MaxOutputOpt = Annotated[int | None, typer.Option(
    "--max-output-tokens", min=1, help="Tokens reserved when a request sets no max_tokens.")]


def _model_body(file: Path | None, name: str | None, deployment: str | None, alias: list[str] | None,
                model_type: str | None, input_price: str | None, output_price: str | None,
                max_output_tokens: int | None, price: dict[str, Any] | None = None) -> dict[str, Any]:
    body = _body(file, {"name": name, "deployment": deployment, "aliases": alias or None,
                        "type": model_type, "max_output_tokens": max_output_tokens})
    if input_price is not None or output_price is not None:
        price = {**(price or {}), **(body.get("price") or {})}
        for field, value in (("input_per_million", input_price), ("output_per_million", output_price)):
            if value is not None:
                price[field] = value
        body["price"] = price
    return body


@models_app.command("list")
def models_list(deployment: DeploymentOpt = None, model_type: TypeOpt = None,
                managed_by: ManagedByOpt = None, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                as_json: JsonOpt = False) -> None:
    """List models (team roles: those granted to their teams)."""
    rows = _list(url, key, "/models", {"deployment": deployment, "type": model_type,
                                       "managed_by": managed_by})
    _emit_rows("models", rows, MODEL_COLUMNS, as_json)


@models_app.command("show")
def models_show(ref: Ref, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                as_json: JsonOpt = False) -> None:
    """Show one model."""
    _emit("models", _show(url, key, "models", ref), MODEL_FIELDS, as_json)


@models_app.command("create")
def models_create(
    file: FileOpt = None, name: NameOpt = None, deployment: DeploymentOpt = None,
    alias: AliasOpt = None, model_type: TypeOpt = None, input_price: PriceOpt = None,
    output_price: PriceOpt = None, max_output_tokens: MaxOutputOpt = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create a model (from --file and/or flags); its name and aliases must be free."""
    body = _model_body(file, name, deployment, alias, model_type, input_price, output_price,
                       max_output_tokens)
    _emit("models", _api(url, key, "POST", "/models", body), MODEL_FIELDS, as_json)


@models_app.command("update")
def models_update(
    ref: Ref, file: FileOpt = None, name: NameOpt = None, deployment: DeploymentOpt = None,
    alias: AliasOpt = None, model_type: TypeOpt = None, input_price: PriceOpt = None,
    output_price: PriceOpt = None, max_output_tokens: MaxOutputOpt = None,
    url: UrlOpt = DEFAULT_URL, key: KeyOpt = None, as_json: JsonOpt = False,
) -> None:
    """Change the fields given; one price flag keeps the other price as it is."""
    model_id = id_of(url, key, "models", ref)
    current = None
    if input_price is not None or output_price is not None:
        current = _api(url, key, "GET", f"/models/{_quote(model_id)}").get("price")
    body = _model_body(file, name, deployment, alias, model_type, input_price, output_price,
                       max_output_tokens, current)
    _emit("models", _api(url, key, "PATCH", f"/models/{_quote(model_id)}", body), MODEL_FIELDS,
          as_json)


@models_app.command("delete")
def models_delete(ref: Ref, url: UrlOpt = DEFAULT_URL, key: KeyOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Delete a model (grants and limits naming it stay, and apply again if it comes back)."""
    model_id = id_of(url, key, "models", ref)
    _api(url, key, "DELETE", f"/models/{_quote(model_id)}")
    _deleted("model", ref, model_id, as_json)


CATALOG_APPS = (("providers", providers_app), ("deployments", deployments_app),
                ("models", models_app), ("prices", prices_app))
