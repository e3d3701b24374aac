"""The ``inferenceops`` command line: serve the platform, run its worker, run a simulated engine.

Flags override ``INFERENCEOPS_*`` environment variables; both are validated
before anything starts, and errors say what to fix (exit code 2).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer
from pydantic import ValidationError

from inferenceops import __version__
from inferenceops.cli.adapters import ADAPTER_APPS
from inferenceops.cli.admin import ADMIN_APPS
from inferenceops.cli.admission import ADMISSION_APPS
from inferenceops.cli.apply import apply_command
from inferenceops.cli.catalog import CATALOG_APPS
from inferenceops.cli.chargeback import chargeback_command
from inferenceops.cli.guardrails import GUARDRAIL_APPS
from inferenceops.cli.invitations import INVITATION_APPS
from inferenceops.cli.retention import RETENTION_APPS
from inferenceops.cli.usage import usage_command

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="InferenceOps: run AI inference as a governed internal service.")

Server = Literal["granian", "uvicorn"]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _server(value: str) -> Server:
    if value == "granian":
        return "granian"
    if value == "uvicorn":
        return "uvicorn"
    _fail(f"--server must be granian or uvicorn, not {value!r}")


_FLAGS = {"host": "--host", "port": "--port", "data_dir": "--data-dir", "config": "--config",
          "workers": "--workers", "server": "--server", "shutdown_timeout_s": "--shutdown-timeout"}


def _settings_errors(exc: ValidationError) -> str:
    lines = ["invalid settings:"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        flag = _FLAGS.get(field)
        source = f"flag {flag} or env" if flag else "env"
        lines.append(f"  {field} ({source} INFERENCEOPS_{field.upper()}): {err['msg']}")
    return "\n".join(lines)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Local data folder.")] = None,
    config: Annotated[Path | None, typer.Option(help="Platform YAML (models, deployments).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    server: Annotated[str | None, typer.Option(help="granian or uvicorn.")] = None,
    shutdown_timeout: Annotated[float | None, typer.Option(
        help="Seconds in-flight requests may take to finish at shutdown.")] = None,
) -> None:
    """Serve the data plane (and, as they arrive, admin API and console)."""
    from inferenceops.app import build_simulators
    from inferenceops.config.spec import load_platform
    from inferenceops.control.bootstrap import prepare_store
    from inferenceops.launch import exec_server
    from inferenceops.platform import KeyHasher
    from inferenceops.platform_secret import platform_secret
    from inferenceops.settings import Settings
    from inferenceops.store import StoreError

    flags = {"host": host, "port": port, "data_dir": data_dir, "config": config,
             "workers": workers, "server": server, "shutdown_timeout_s": shutdown_timeout}
    for name, value in flags.items():
        if value is not None:
            os.environ[f"INFERENCEOPS_{name.upper()}"] = str(value)
    try:
        settings = Settings()
    except ValidationError as exc:
        _fail(_settings_errors(exc))
    from inferenceops.config.spec import ConfigError  # here: operator commands never need it

    try:
        platform = load_platform(settings.config, loopback_base_url=settings.loopback_base_url)
        build_simulators(platform)
    except ConfigError as exc:
        _fail(str(exc))

    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    try:
        prepared = asyncio.run(prepare_store(
            settings.resolved_database_url, KeyHasher(platform_secret(settings)), platform,
            admin_key=admin_key, from_file=settings.config is not None))
    except StoreError as exc:
        _fail(f"store: {exc}")
    base = settings.loopback_base_url
    lines = [f"InferenceOps {__version__} — serving {platform.source}",
             f"  base URL : {base}/v1",
             f"  models   : {', '.join(prepared.models) or '(none yet: add some with the admin API)'}",
             f"  store    : {_redacted(settings.resolved_database_url)} (schema {prepared.revision})"]
    if prepared.applied is not None and prepared.applied.changes:
        lines.append("  catalog  : " + prepared.applied.text().replace("\n", "\n             "))
    if prepared.new_admin_key:
        lines.append(f"  admin key: {prepared.new_admin_key}   (shown once: only its hash is stored)")
    elif admin_key:
        lines.append("  admin key: from INFERENCEOPS_ADMIN_KEY")
    else:
        lines.append("  admin key: the one printed at first start (or set INFERENCEOPS_ADMIN_KEY)")
    typer.echo("\n".join(lines))
    # The server runs in a fresh interpreter (same pid): its workers are forked from a process
    # that holds none of the above (typer, Alembic, the store's schema), see inferenceops.launch.
    exec_server(factory="inferenceops.app:create_app", host=settings.host, port=settings.port,
                workers=settings.workers, server=settings.server,
                shutdown_timeout_s=settings.shutdown_timeout_s, log_level=settings.log_level,
                access_log=settings.access_log, interface="rsgi")


@app.command()
def worker(
    data_dir: Annotated[Path | None, typer.Option(help="Local data folder.")] = None,
    config: Annotated[Path | None, typer.Option(help="Platform YAML (models, deployments).")] = None,
    shutdown_timeout: Annotated[float | None, typer.Option(
        help="Seconds each background service may take to stop.")] = None,
) -> None:
    """Run the background services without the HTTP server (the batch executor, usage rollups),
    on the same store as ``serve``. Stops cleanly on SIGTERM or SIGINT."""
    from inferenceops.app import run_worker
    from inferenceops.settings import Settings
    from inferenceops.store import StoreError, upgrade

    flags = {"data_dir": data_dir, "config": config, "shutdown_timeout_s": shutdown_timeout}
    for name, value in flags.items():
        if value is not None:
            os.environ[f"INFERENCEOPS_{name.upper()}"] = str(value)
    try:
        settings = Settings()
    except ValidationError as exc:
        _fail(_settings_errors(exc))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await upgrade(settings.resolved_database_url)
        await run_worker(settings, stop)

    typer.echo(f"InferenceOps {__version__} worker — store "
               f"{_redacted(settings.resolved_database_url)}")
    sys.stdout.flush()
    from inferenceops.config.spec import ConfigError

    try:
        asyncio.run(main())
    except ConfigError as exc:
        _fail(str(exc))
    except StoreError as exc:
        _fail(f"store: {exc}")


db_app = typer.Typer(no_args_is_help=True, help="The control-plane store.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (safe to run from several places at once: it takes a lock)."""
    from inferenceops.settings import Settings
    from inferenceops.store import StoreError, upgrade

    try:
        settings = Settings()
    except ValidationError as exc:
        _fail(_settings_errors(exc))
    try:
        head = asyncio.run(upgrade(settings.resolved_database_url))
    except StoreError as exc:
        _fail(f"store: {exc}")
    typer.echo(f"{_redacted(settings.resolved_database_url)} is at schema {head}")


audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log.")
app.add_typer(audit_app, name="audit")
for _name, _sub_app in (*ADMIN_APPS, *ADMISSION_APPS, *CATALOG_APPS, *ADAPTER_APPS, *INVITATION_APPS,
                        *GUARDRAIL_APPS, *RETENTION_APPS):
    app.add_typer(_sub_app, name=_name)
app.command("apply")(apply_command)
app.command("usage")(usage_command)
app.command("chargeback")(chargeback_command)


@audit_app.command("verify")
def audit_verify(
    anchor: Annotated[str | None, typer.Option(
        help="'<seq>:<hex hash>' recorded earlier outside the database: also detects a "
             "deleted tail.")] = None,
) -> None:
    """Check the audit log's hash chain: any edited or deleted entry is reported (exit 1)."""
    from inferenceops.audit import Anchor
    from inferenceops.audit.check import format_report, verify_store
    from inferenceops.settings import Settings
    from inferenceops.store import StoreError

    try:
        settings = Settings()
        parsed = Anchor.parse(anchor) if anchor else None
    except ValidationError as exc:
        _fail(_settings_errors(exc))
    except ValueError as exc:
        _fail(f"--anchor: {exc}")
    try:
        report = asyncio.run(verify_store(settings.resolved_database_url, anchor=parsed))
    except StoreError as exc:
        _fail(f"store: {exc}")
    typer.echo(format_report(report))
    raise typer.Exit(0 if report.ok else 1)


def _redacted(url: str) -> str:
    """A database URL fit to print: no password."""
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in credentials else url


@app.command()
def simulate(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    profile: Annotated[str, typer.Option(help="Built-in profile name or a YAML path.")] =
        "llama-3.1-8b-h100",
    model: Annotated[str, typer.Option(help="Model name the simulator answers to.")] = "sim-model",
    seed: Annotated[int, typer.Option(help="Seed for deterministic output.")] = 0,
    server: Annotated[str, typer.Option(help="granian or uvicorn.")] = "granian",
    scheduling_policy: Annotated[str | None, typer.Option(
        help="fcfs or priority (as vLLM's flag); default: the profile's.")] = None,
) -> None:
    """Run a simulated engine (OpenAI-compatible, vLLM-style /metrics) on its own."""
    from inferenceops.engines.simulator import load_profile
    from inferenceops.serving import SIMULATOR_ENV, run

    chosen = _server(server)
    try:
        load_profile(profile)
    except ValueError as exc:
        _fail(f"--profile: {exc}")
    if scheduling_policy not in (None, "fcfs", "priority"):
        _fail(f"--scheduling-policy: {scheduling_policy!r} is not fcfs or priority")
    os.environ.update({SIMULATOR_ENV + "PROFILE": profile, SIMULATOR_ENV + "MODEL": model,
                       SIMULATOR_ENV + "SEED": str(seed),
                       SIMULATOR_ENV + "SCHEDULING_POLICY": scheduling_policy or ""})
    typer.echo(f"InferenceOps simulator ({profile}) serving {model!r} at http://{host}:{port}/v1")
    run("inferenceops.serving:simulator_app", host=host, port=port, workers=1,
        server=chosen, shutdown_timeout_s=5)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
