"""Builds the application from settings: the one place long-lived objects are made.

``create_app`` is the factory the ASGI servers call in each worker process; it
reads ``Settings`` from the environment (the CLI puts its flags there first).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from inferenceops.admission.control import AdmissionControl
from inferenceops.admission.instance import instance_heartbeat
from inferenceops.admission.ledger import Ledger
from inferenceops.config.spec import ConfigError, Platform, load_platform
from inferenceops.engines.openai_compat import OpenAICompatClient
from inferenceops.engines.simulator.mounts import SimulatorMounts
from inferenceops.gateway.app import GatewayApp
from inferenceops.gateway.http import ASGIApp
from inferenceops.gateway.ondemand import OnDemandApp
from inferenceops.gateway.state import GatewayState
from inferenceops.guardrails.detect import use_detector
from inferenceops.outbox import Outbox
from inferenceops.pipeline.forward import Forwarder
from inferenceops.pipeline.kernel import Pipeline
from inferenceops.platform import ApiKey, Identity, KeyHasher, Principal, Snapshot
from inferenceops.platform.identity import PLATFORM_ADMIN
from inferenceops.platform.keys import visible_prefix
from inferenceops.platform_secret import platform_secret
from inferenceops.routing import SCRAPED_STRATEGIES, EngineBoard, default_router
from inferenceops.routing.breaker import BreakerPolicy
from inferenceops.routing.health import FleetHealth
from inferenceops.routing.prober import ReadinessProber
from inferenceops.routing.retry import RetryPolicy
from inferenceops.routing.scraper import EngineScraper
from inferenceops.settings import Settings
from inferenceops.supervisor import Service

if TYPE_CHECKING:
    from inferenceops.store import CredentialCipher

log = logging.getLogger("inferenceops")


def build_simulators(platform: Platform) -> SimulatorMounts:
    mounts = SimulatorMounts()
    try:
        mounts.sync(platform.simulators, strict=True)
    except ValueError as exc:
        raise ConfigError(f"{platform.source}: {exc}") from None
    return mounts


def bootstrap_identity(hasher: KeyHasher, admin_key: str) -> Identity:
    """The identity of a store-less process: one platform-admin key."""
    admin = Principal("usr_bootstrap", "user", PLATFORM_ADMIN)
    key = ApiKey("key_bootstrap", visible_prefix(admin_key), admin, None,
                 frozenset({"inference", "batch", "admin"}))
    return Identity([(hasher.digest(admin_key), key)], {})


def build_admission(settings: Settings, outbox: Outbox | None = None) -> AdmissionControl:
    """Admission with the ledger the settings ask for: Redis when shared, else this process's memory."""
    if settings.redis_url:
        from inferenceops.admission.instance import Liveness
        from inferenceops.admission.redis_ledger import RedisLedger

        liveness = Liveness(settings.admission_heartbeat_s, settings.admission_heartbeat_ttl_s)
        ledger: Ledger = RedisLedger(settings.redis_url, timeout_s=settings.redis_timeout_s,
                                     liveness=liveness)
    else:
        from inferenceops.admission.memory_ledger import MemoryLedger

        if settings.workers > 1:
            log.warning("%d workers share no admission ledger: every limit and budget is counted "
                        "per worker; set INFERENCEOPS_REDIS_URL to share them", settings.workers)
        ledger = MemoryLedger()
    return AdmissionControl(ledger, fail_open=settings.admission_fail_open, outbox=outbox)


def build_state(settings: Settings, platform: Platform, hasher: KeyHasher, identity: Identity,
                *, outbox: Outbox | None = None, leading: Sequence[Service] = (),
                board: EngineBoard | None = None) -> GatewayState:
    """The serving state: the pipeline, its outbox, admission and engines, and their services.

    ``leading`` services start first and stop last (the outbox writer); a ledger shared
    through Redis brings its heartbeat next. ``create_app`` adds the services that read
    the store after these. ``board`` is what the engine-aware routing strategies know of
    each replica's load (``build_process`` adds the scraper that keeps it fresh).
    """
    use_guardrails_detector(settings)
    client = OpenAICompatClient(platform.catalog.deployments.values(),
                                max_response_bytes=settings.max_response_bytes)
    outbox = outbox or Outbox(max_records=settings.outbox_max_records)
    admission = build_admission(settings, outbox)
    forwarder = Forwarder(client, default_router(board), health=fleet_health(settings),
                          retry=RetryPolicy(budget=settings.retry_budget,
                                            max_wait_s=settings.retry_max_wait_s))
    pipeline = Pipeline(hasher=hasher, forwarder=forwarder, outbox=outbox, admission=admission,
                        max_body_bytes=settings.max_body_bytes,
                        max_tokens_limit=settings.max_tokens_limit,
                        retained_body_max_bytes=settings.retained_body_max_bytes)
    state = GatewayState(snapshot=Snapshot(platform.catalog, identity), hasher=hasher,
                         client=client, pipeline=pipeline, outbox=outbox,
                         simulators=build_simulators(platform))
    heartbeat = instance_heartbeat(admission)  # a shared ledger's leases need a live instance
    for service in (*leading, *([] if heartbeat is None else [heartbeat])):
        state.supervisor.add(service, stop_deadline_s=settings.shutdown_timeout_s)
    return state


def use_guardrails_detector(settings: Settings) -> None:
    """The detector set every guardrail check of this process uses (``guardrails_detector``)."""
    if settings.guardrails_detector == "presidio":
        from inferenceops.guardrails.presidio import PresidioDetector, PresidioUnavailable
        try:
            use_detector(PresidioDetector())
        except PresidioUnavailable as exc:
            raise ConfigError(str(exc)) from None
    else:
        use_detector(None)


def fleet_health(settings: Settings) -> FleetHealth:
    """Replica health and circuit breakers of one process, as the settings ask."""
    policy = BreakerPolicy(failures_to_open=settings.breaker_failures,
                           open_s=min(settings.breaker_open_s, settings.breaker_max_open_s),
                           max_open_s=settings.breaker_max_open_s,
                           slow_start_s=settings.slow_start_s)
    return FleetHealth(policy, hung_after_s=settings.hung_after_s)


def admin_on_demand(settings: Settings, hasher: KeyHasher, currency: str,
                    cipher: CredentialCipher, wake: Callable[[], None],
                    fleet: object = None) -> OnDemandApp:
    """The admin API of a serving process, built on its first ``/admin/`` request.

    FastAPI, the admin schemas and routes, the human sign-ins (PyJWT) are imported
    then, not at start: a worker that never serves ``/admin/`` never holds them. Its
    database's changes wake ``wake`` (the snapshot feed), so this process's admin
    changes apply at once; the service closes that pool at shutdown.
    """

    def build() -> tuple[ASGIApp, Callable[[], Awaitable[None]]]:
        from inferenceops.admin.wiring import build_admin

        app, admin_db = build_admin(settings, hasher, currency=currency, cipher=cipher,
                                    fleet=fleet)
        admin_db.db.on_change.append(wake)
        return app, admin_db.stop

    return OnDemandApp("admin-api", build, what="The admin API", code="admin_unavailable")


def files_on_demand(settings: Settings, state: GatewayState) -> OnDemandApp:
    """The Files and Batch APIs (``/v1/files``, ``/v1/batches``: ``batch.routes``,
    ``batch.batch_routes``), built on the first request to either.

    It authenticates against the data plane's current snapshot and keeps its files in
    ``settings.resolved_files_dir``; the service closes its database pool at shutdown.
    Uploads a crash left half-written are swept from the folder when it is built.
    """

    def build() -> tuple[ASGIApp, Callable[[], Awaitable[None]]]:
        from inferenceops.batch.batch_routes import BatchApi, BatchesApp
        from inferenceops.batch.batch_service import BatchesService
        from inferenceops.batch.files import FileStore
        from inferenceops.batch.routes import FilesApp
        from inferenceops.batch.service import PARTIAL_MAX_AGE_S, FilesService
        from inferenceops.batch.upload import FileLimits

        store = FileStore(settings.resolved_files_dir)
        swept = store.sweep_partial(PARTIAL_MAX_AGE_S)
        if swept:
            log.info("files: removed %d upload(s) a crash left unfinished", swept)
        limits = FileLimits(max_bytes=settings.files_max_bytes,
                            max_lines=settings.files_max_lines,
                            max_line_bytes=settings.max_body_bytes)
        service = FilesService(settings.resolved_database_url, store, limits,
                               expire_after_s=settings.files_expire_after_s)
        app = FilesApp(service, snapshot=lambda: state.snapshot, hasher=state.hasher,
                       note_key_use=state.outbox.note_key_use)
        batches = BatchesService(settings.resolved_database_url, store,
                                 inline_lines=settings.batch_validate_inline_lines)
        batches_app = BatchesApp(batches, snapshot=lambda: state.snapshot, hasher=state.hasher,
                                 note_key_use=state.outbox.note_key_use)

        async def close() -> None:
            await service.close()
            await batches.close()

        return BatchApi(app, batches_app), close

    return OnDemandApp("files-api", build, what="The Files API", code="files_unavailable")


def build_process(settings: Settings, *, serve_admin: bool) -> GatewayState:
    """Everything one process runs, on the store: the state and its services.

    Services in start order (stopped in reverse): the outbox writer first, so it
    flushes after everything that feeds it has stopped; the Redis heartbeat; the
    snapshot feed (the first snapshot is built before the process is ready); the
    usage rollups (every process, the store lets one work at a time) and the reads
    behind ``GET /v1/usage`` (their pool opens on the first); the retention sweep of
    kept bodies; the Files API and the
    admin API (each built on its first request; their services close their database
    pools) when this process serves HTTP.
    """
    from inferenceops.control.snapshot_feed import SnapshotFeed
    from inferenceops.control.usage_reads import UsageReads
    from inferenceops.control.usage_rollup import UsageRollups
    from inferenceops.outbox.writer import OutboxWriter
    from inferenceops.retention.sweeper import RetentionSweeper
    from inferenceops.store.credentials import cipher_from_environment
    from inferenceops.store.db import backend_of

    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    platform = load_platform(settings.config, loopback_base_url=settings.loopback_base_url)
    secret = platform_secret(settings)
    hasher = KeyHasher(secret)
    outbox = Outbox(max_records=settings.outbox_max_records)
    writer = OutboxWriter(outbox, settings.resolved_database_url, flush_s=settings.outbox_flush_s)
    board = EngineBoard(stale_after_s=settings.engine_metrics_interval_s
                        * settings.engine_metrics_stale_after)
    state = build_state(settings, platform, hasher, Identity([], {}), outbox=outbox,
                        leading=[writer], board=board)
    # Next after the writer and heartbeat: the engine-metrics scraper, which reads the catalog
    # the process serves at each round (the feed may swap it) and keeps ``board`` fresh for the
    # engine_load deployments (docs/routing.md).
    state.supervisor.add(EngineScraper(lambda: state.snapshot.catalog.deployments.values(), board,
                                       scraped=SCRAPED_STRATEGIES,
                                       interval_s=settings.engine_metrics_interval_s,
                                       timeout_s=settings.engine_metrics_timeout_s),
                         stop_deadline_s=settings.shutdown_timeout_s)
    state.metric_sources.append(lambda: board.render(state.snapshot.catalog.deployments.values()))
    # Then the readiness probes, which feed the replicas' circuit breakers (docs/health.md).
    state.supervisor.add(ReadinessProber(lambda: state.snapshot.catalog.deployments.values(),
                                         state.pipeline.forwarder.health,
                                         interval_s=settings.health_probe_interval_s,
                                         timeout_s=settings.health_probe_timeout_s,
                                         adapters=state.pipeline.forwarder.adapters),
                         stop_deadline_s=settings.shutdown_timeout_s)
    cipher = cipher_from_environment(os.environ, secret)
    feed = SnapshotFeed(settings.resolved_database_url, platform, state=state,
                        loopback_base_url=settings.loopback_base_url, cipher=cipher,
                        refresh_s=settings.snapshot_refresh_s)
    rollups = UsageRollups(settings.resolved_database_url,
                           interval_s=settings.usage_rollup_interval_s,
                           retention_days=settings.usage_retention_days)
    reads = UsageReads(settings.resolved_database_url)
    state.usage = reads
    sweep = RetentionSweeper(settings.resolved_database_url,
                             lambda: state.snapshot.policy.retention,
                             interval_s=settings.retention_sweep_s)
    services: list[Service] = [feed, rollups, reads, sweep]
    if serve_admin:
        files = files_on_demand(settings, state)
        state.files_app = files
        services.append(files)
        admin = admin_on_demand(settings, hasher, platform.policy.currency, cipher, feed.wake,
                                fleet=lambda: (state.pipeline.forwarder.health,
                                               state.snapshot.catalog.deployments))
        state.admin_app = admin
        services.append(admin)
    if not serve_admin or backend_of(settings.resolved_database_url) == "sqlite":
        services.append(batch_executor(settings, state, board))
    services.append(file_expiry(settings))
    for service in services:
        state.supervisor.add(service, stop_deadline_s=settings.shutdown_timeout_s)
    return state


def file_expiry(settings: Settings) -> Service:
    """The sweep that deletes expired files (``batch.file_expiry``): every process that may
    keep the files folder runs one; they share the work."""
    from inferenceops.batch.file_expiry import FileExpiry
    from inferenceops.batch.files import FileStore

    return FileExpiry(settings.resolved_database_url, FileStore(settings.resolved_files_dir),
                      interval_s=settings.files_sweep_s)


def batch_executor(settings: Settings, state: GatewayState,
                   board: EngineBoard | None = None) -> Service:
    """The batch executor (``batch.executor``) of a process: its lines run through this
    process's pipeline, as this process's snapshot says, and are dispatched on the spare
    capacity ``board`` (the process's engine scrapes) and its gates show (``batch.dispatch``).
    Every ``worker`` runs one; a serving process runs one on SQLite (the embedded default has
    no workers), not on PostgreSQL, where workers do the batch work apart from the interactive
    traffic."""
    from inferenceops.batch.executor import BatchExecutor
    from inferenceops.batch.files import FileStore

    executor = BatchExecutor(settings.resolved_database_url,
                             FileStore(settings.resolved_files_dir), state.pipeline,
                             lambda: state.snapshot, lease_s=settings.batch_lease_s,
                             concurrency=settings.batch_concurrency, claim=settings.batch_claim,
                             poll_s=settings.batch_poll_s, board=board)
    state.metric_sources.append(executor.render_metrics)  # its promotions, where /metrics is
    return executor


#: What ``build_process`` imports when it runs (inside it, so that importing this module stays
#: light for the CLI and the tests), for ``preload``.
PROCESS_MODULES = ("inferenceops.admission.memory_ledger", "inferenceops.control.snapshot_feed",
                   "inferenceops.control.usage_reads", "inferenceops.control.usage_rollup",
                   "inferenceops.outbox.writer", "inferenceops.retention.sweeper",
                   "inferenceops.store.credentials")


def preload() -> None:
    """Import what ``create_app`` needs, building nothing: for a server that forks its workers.

    granian forks its workers from its main process (``inferenceops.launch``); what that
    process imported first is shared by every worker (copy-on-write) instead of loaded
    again by each. Not the admin API: a worker loads that on its first ``/admin/`` request.
    """
    for name in PROCESS_MODULES:
        importlib.import_module(name)


def create_app(settings: Settings | None = None) -> GatewayApp:
    """The serving app (the ASGI factory each server worker calls)."""
    return GatewayApp(build_process(settings or Settings(), serve_admin=True))


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """``inferenceops worker``: the same process without the HTTP server, until ``stop`` is set.

    Today it runs the services every process runs (snapshot feed, outbox writer, the
    Redis heartbeat, usage rollups) and a batch executor (``batch_executor``).
    """
    state = build_process(settings, serve_admin=False)
    await state.start()
    log.info("worker ready: %s", ", ".join(state.supervisor.names))
    try:
        await stop.wait()
    finally:
        log.info("worker stopping")
        await state.stop()
