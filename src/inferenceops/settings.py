"""Process settings: the one typed source of truth for how this process runs.

Values come from (highest first) CLI flags, ``INFERENCEOPS_*`` environment
variables (``__`` nests), then defaults. What the platform *serves* (models,
deployments) lives in the platform YAML (``platform.config``), not here.
Loaded once at start and passed explicitly; nothing reads the environment later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from inferenceops.platform.retention import RETAINED_BODY_MAX_BYTES
from inferenceops.signin_settings import OIDCConfig, ProxyAuthConfig, check_cidrs


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="INFERENCEOPS_", env_nested_delimiter="__", extra="ignore"
    )

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="Port to listen on.")
    data_dir: Path = Field(Path("inferenceops-data"), description="Local data folder.")
    config: Path | None = Field(None, description="Platform YAML; unset = embedded demo.")
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL (postgresql+asyncpg://… for production); "
        "unset = SQLite in the data folder."
    )
    redis_url: str | None = Field(
        None, description="Redis for limits and budgets shared by every replica (redis://host:6379/0); "
        "unset = kept in this process's memory (one process only)."
    )
    redis_timeout_s: float = Field(0.5, gt=0, le=30, description="Longest wait for one Redis call.")
    admission_fail_open: bool = Field(
        False, description="When Redis cannot be reached: false = refuse requests with 503 (fail "
        "closed); true = admit them unmetered. Either way it is logged and counted."
    )
    admission_heartbeat_s: float = Field(
        2.0, ge=0.05, le=5, description="With Redis: how often this process proves to the shared "
        "ledger that it is alive (its concurrency slots and budget reservations depend on it)."
    )
    admission_heartbeat_ttl_s: float = Field(
        6.0, ge=0.1, le=10, description="With Redis: how long after its last heartbeat a process "
        "counts as dead, so other replicas free its slots and reservations (at least twice the "
        "heartbeat interval). Meanwhile the process itself refuses admissions that need them."
    )
    admin_key: SecretStr | None = Field(
        None, description="Bootstrap key; unset = generated once and kept in the data folder."
    )
    secret_key: SecretStr | None = Field(
        None, description="Platform secret (>= 32 bytes) keying API-key hashes; unset = generated "
        "once into the data folder. Every replica must share it."
    )
    oidc: OIDCConfig | None = Field(
        None, description="Admin sign-in with OIDC bearer tokens (INFERENCEOPS_OIDC__ISSUER, …)."
    )
    proxy_auth: ProxyAuthConfig | None = Field(
        None, description="Admin sign-in through a trusted auth proxy's identity headers."
    )
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="CIDRs of the reverse proxies in front of the platform, comma-separated: "
        "X-Forwarded-For is believed only from these (the client address the audit log records)."
    )
    server: Literal["granian", "uvicorn"] = "granian"
    workers: int = Field(1, ge=1, le=256)
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="How long in-flight requests and streams may finish at shutdown."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest accepted request body (413 above)."
    )
    max_tokens_limit: int = Field(
        1_048_576, ge=1, description="Largest max_tokens accepted before reaching an engine."
    )
    max_response_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest non-streamed answer read from an engine; "
        "a larger one is cut off (the connection dropped) and the caller gets 502."
    )
    snapshot_refresh_s: float = Field(
        1.0, gt=0, le=60, description="How often each worker checks the store for changes."
    )
    engine_metrics_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often each worker scrapes the /metrics of the replicas "
        "of deployments routed by engine load."
    )
    engine_metrics_timeout_s: float = Field(
        0.5, gt=0, le=60, description="How long one scrape of one replica's /metrics may take."
    )
    engine_metrics_stale_after: int = Field(
        3, ge=1, le=1000, description="Intervals after which a replica's last scrape is stale: "
        "routing then falls back to the worker's own in-flight count for it."
    )
    health_probe_interval_s: float = Field(
        2.0, gt=0, le=300, description="How often each worker probes every self-hosted replica's "
        "readiness (GET /health and /v1/models; docs/health.md)."
    )
    health_probe_timeout_s: float = Field(
        1.0, gt=0, le=60, description="How long one readiness probe of one replica may take."
    )
    breaker_failures: int = Field(
        3, ge=1, le=1_000_000, description="Consecutive failures (connect, 5xx, timeout, broken "
        "stream, failed probe) that open a replica's circuit breaker."
    )
    breaker_open_s: float = Field(
        1.0, gt=0, le=600, description="How long a breaker stays open before one trial request; "
        "doubled by each failed trial."
    )
    breaker_max_open_s: float = Field(
        30.0, gt=0, le=3600, description="The longest a breaker stays open between trials."
    )
    slow_start_s: float = Field(
        5.0, ge=0, le=3600, description="After a replica recovers, its share of new work ramps "
        "from 10% to 100% over this long."
    )
    hung_after_s: float = Field(
        30.0, gt=0, le=3600, description="A replica whose in-flight streams all sent nothing for "
        "this long is suspected hung (its breaker opens)."
    )
    retry_budget: int = Field(
        2, ge=0, le=10, description="Re-sends per request after an engine's 429 or 503, with "
        "backoff (connect failures move to another replica regardless)."
    )
    retry_max_wait_s: float = Field(
        2.0, ge=0, le=60, description="The longest wait before such a re-send; an engine asking "
        "for longer (Retry-After) gets its answer passed back instead."
    )
    outbox_flush_s: float = Field(
        1.0, gt=0, le=60, description="How often each worker writes what the data plane queued "
        "(usage records, keys' last use, audit entries) to the store; also the most a hard kill "
        "can lose."
    )
    outbox_max_records: int = Field(
        100_000, ge=100, le=10_000_000, description="Records each worker may hold for the store; "
        "past it new records are dropped and counted."
    )
    usage_rollup_interval_s: float = Field(
        60.0, gt=0, le=3600, description="How often the usage rollups (hourly and daily sums per "
        "team, key, model, adapter and deployment, which reports read) are brought up to date; "
        "reports lag the ledger by about this much."
    )
    retained_body_max_bytes: int = Field(
        RETAINED_BODY_MAX_BYTES, ge=1024, le=64 * 1024 * 1024, description="For a team that keeps "
        "bodies (retention: store), each side — the request, the answer — is cut at this size."
    )
    retention_sweep_s: float = Field(
        300.0, gt=0, le=86_400, description="How often retained bodies past their team's "
        "retention (or of teams that no longer keep bodies) are deleted."
    )
    usage_retention_days: int = Field(
        90, ge=0, le=36_500, description="Raw usage records older than this many days are deleted "
        "once rolled up (the rollups are kept); 0 keeps them forever."
    )
    files_dir: Path | None = Field(
        None, description="Where the Files API keeps uploaded files (batch input); unset = "
        "'files' in the data folder. Every replica serving /v1/files must see the same folder."
    )
    files_max_bytes: int = Field(
        200 * 1024 * 1024, ge=1024, description="Largest file accepted by POST /v1/files "
        "(413 above)."
    )
    files_max_lines: int = Field(
        50_000, ge=1, description="Most requests (lines) a batch input file may hold (400 above)."
    )
    files_expire_after_s: int = Field(
        30 * 86_400, ge=0, le=2_592_000, description="A batch file uploaded without "
        "expires_after expires this long after its creation, as OpenAI's do (30 days); 0 keeps "
        "it until it is deleted."
    )
    files_sweep_s: float = Field(
        300.0, gt=0, le=86_400, description="How often expired files are deleted (their rows "
        "and bytes), except the input of a batch that has not finished."
    )
    batch_lease_s: float = Field(
        300.0, ge=1.0, le=86_400.0, description="How long a batch executor holds a line it runs "
        "(a line has 80% of it to finish); a line whose executor died is run again after it."
    )
    batch_concurrency: int = Field(
        8, ge=1, le=1024, description="Batch lines one executor runs at once."
    )
    batch_claim: int = Field(
        16, ge=1, le=10_000, description="Batch lines one executor claims per round."
    )
    batch_poll_s: float = Field(
        1.0, gt=0.0, le=60.0, description="How often an idle batch executor looks for work (also "
        "how soon a cancel or a finished batch is acted on)."
    )
    batch_validate_inline_lines: int = Field(
        1000, ge=0, le=1_000_000, description="A batch whose input file holds at most this many "
        "requests is checked inside its create call (created in_progress or failed); a larger "
        "one is created 'validating' and checked by a batch executor afterwards, as OpenAI's. "
        "0: every batch is validated afterwards."
    )
    guardrails_detector: Literal["builtin", "presidio"] = Field(
        "builtin", description="Who finds PII for guardrail policies: the built-in detectors, or "
        "Microsoft Presidio's recognizers (the `presidio` extra; secrets stay built-in)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = False

    @field_validator("secret_key")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes; generate one with "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_cidrs(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// "
                             "(e.g. redis://127.0.0.1:6379/0)")
        return value or None

    @model_validator(mode="after")
    def _scrapes_stay_fresh_between_rounds(self) -> Settings:
        # A round waits for its slowest scrape: with one replica answering at the deadline, the
        # others' scrapes come in up to timeout + interval apart and must not go stale meanwhile.
        window = self.engine_metrics_interval_s * self.engine_metrics_stale_after
        if window <= self.engine_metrics_timeout_s + self.engine_metrics_interval_s:
            raise ValueError(
                f"engine_metrics_interval_s × engine_metrics_stale_after ({window:g}s) must be "
                f"longer than engine_metrics_timeout_s + engine_metrics_interval_s "
                f"({self.engine_metrics_timeout_s + self.engine_metrics_interval_s:g}s): one "
                "replica answering its scrapes at the deadline would make every replica's engine "
                "metrics stale between rounds; raise engine_metrics_stale_after or lower the "
                "timeout")
        return self

    @model_validator(mode="after")
    def _heartbeat_survives_one_loss(self) -> Settings:
        if self.admission_heartbeat_ttl_s < 2 * self.admission_heartbeat_s:
            raise ValueError("admission_heartbeat_ttl_s must be at least twice admission_heartbeat_s "
                             "(one lost heartbeat must not make a live process count as dead)")
        return self

    @field_validator("config")
    @classmethod
    def _config_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"platform config file {str(value)!r} does not exist")
        return value

    @property
    def resolved_database_url(self) -> str:
        """The store's URL: the configured one, or SQLite (WAL) in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'inferenceops.db').resolve()}"

    @property
    def resolved_files_dir(self) -> Path:
        """The Files API's folder: the configured one, or ``files`` in the data folder."""
        return self.files_dir if self.files_dir is not None else self.data_dir / "files"

    @property
    def loopback_base_url(self) -> str:
        """Where this process can reach itself (in-process simulators are mounted here)."""
        host = self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"
