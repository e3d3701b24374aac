"""Plain, immutable records the store returns: what leaves the store instead of ORM objects.

Pure data (frozen, slotted dataclasses; sets are frozensets), no I/O and no
SQLAlchemy: callers can keep, compare and share them across tasks freely.
``IdentityData`` is what the snapshot builder turns into the data plane's
``platform.identity.Identity``; ``CatalogData`` is the stored model catalog (providers,
deployments, models), whose fields are those of ``config``'s specs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, NamedTuple, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_after`` back as ``after`` for the next (None: last page)."""

    items: tuple[T, ...]
    next_after: str | None


@dataclass(frozen=True, slots=True)
class TeamRecord:
    id: str
    name: str
    weight: int
    created_at: datetime
    updated_at: datetime
    #: Body retention (``platform.retention``): ``none``, ``store`` (for ``retention_days``), ``zero``.
    retention: str = "none"
    retention_days: int | None = None


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    email: str
    display_name: str
    platform_role: str | None
    disabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ServiceAccountRecord:
    id: str
    team_id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MembershipRecord:
    team_id: str
    user_id: str
    role: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SignInLinkRecord:
    """An external identity (``issuer``, ``subject``) that acts as ``user_id``; ``method``: email,
    provisioned or admin; ``linked_by``: the actor that made the link."""

    id: str
    issuer: str
    subject: str
    user_id: str
    method: str
    linked_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class InvitationRecord:
    """An offer to join a team with a role; ``state``: pending, accepted, declined, withdrawn."""

    id: str
    team_id: str
    user_id: str
    role: str
    state: str
    invited_by: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None


@dataclass(frozen=True, slots=True)
class GrantRecord:
    team_id: str
    model: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A stored key as the admin side sees it (never its secret: only prefix and digest)."""

    id: str
    name: str
    prefix: str
    digest: bytes
    team_id: str | None
    user_id: str | None
    service_account_id: str | None
    scopes: frozenset[str]
    allowed_models: frozenset[str] | None  # None: every model the team may use
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_from_id: str | None
    background_only: bool = False  # its requests always queue as background work
    created_by: str | None = None  # the actor that created it; None for keys older than 0004


class ActiveKey(NamedTuple):
    """A non-revoked key as the snapshot needs it. Expiry is left to the reader (time moves on).

    A named tuple rather than a frozen dataclass: 100,000 of them are built per
    snapshot, and a tuple is several times cheaper to construct.
    """

    id: str
    prefix: str
    digest: bytes
    team_id: str | None
    user_id: str | None
    service_account_id: str | None
    scopes: frozenset[str]
    allowed_models: frozenset[str] | None
    expires_at: datetime | None
    background_only: bool = False
    lineage_id: str | None = None


@dataclass(frozen=True, slots=True)
class LimitRecord:
    """A rate limit set by an operator; ``scope`` says which of key/team/model ids apply.

    key: ``key_id``; team: ``team_id``; model: ``model``; team_model: ``team_id`` + ``model``.
    """

    id: str
    scope: str
    key_id: str | None
    team_id: str | None
    model: str | None
    rpm: int | None
    tpm: int | None
    concurrency: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class BudgetRecord:
    """Money a team (``team_id``) or key (``key_id``) may spend per period, in nano-units."""

    id: str
    scope: str  # "team" | "key"
    key_id: str | None
    team_id: str | None
    amount_nanos: int
    currency: str
    period: str  # daily | weekly | monthly | lifetime
    mode: str  # hard | soft
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class IdentityData:
    """Everything the data plane's identity index is built from, read at one ``revision``."""

    revision: int
    keys: tuple[ActiveKey, ...]
    teams: tuple[TeamRecord, ...]
    users: tuple[UserRecord, ...]
    service_accounts: tuple[ServiceAccountRecord, ...]
    memberships: tuple[MembershipRecord, ...]
    grants: tuple[GrantRecord, ...]
    limits: tuple[LimitRecord, ...] = ()
    budgets: tuple[BudgetRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit-log entry as stored, hash-chained to the one before (``inferenceops.audit``).

    ``before``/``after`` are the JSON the caller passed (never secrets or key
    digests); each record has its own dicts, but treat them as read-only.
    """

    seq: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source: str | None
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """A stored provider (``config.spec.ProviderSpec`` plus bookkeeping).

    ``has_api_key`` says whether an encrypted key is stored. ``api_key`` is that key decrypted,
    filled only by ``repo.load_catalog(session, cipher)``; it is kept out of ``repr`` and
    comparisons. ``managed_by``: None for the admin API, ``"config"`` for a platform file.
    """

    id: str
    name: str
    base_url: str
    dialect: str
    api_key_env: str | None
    has_api_key: bool
    managed_by: str | None
    created_at: datetime
    updated_at: datetime
    api_key: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """A stored deployment: every field of ``config.spec.DeploymentSpec``, its provider by id and name.

    ``replicas``: a count (simulators), replica URLs (openai), or None (the spec's default: one
    simulated replica, or the provider's base URL). ``timeouts`` and ``queue`` hold every value
    of their spec; treat them as read-only.
    """

    id: str
    name: str
    engine: str
    served_model: str
    provider_id: str | None
    provider: str | None  # the provider's name
    profile: str | None
    replicas: int | tuple[str, ...] | None
    seed: int
    api_key_env: str | None
    timeouts: dict[str, Any]
    max_connections: int
    capacity: int | None
    queue: dict[str, Any]
    routing: str
    managed_by: str | None
    created_at: datetime
    updated_at: datetime
    gpu_cost: dict[str, Any] | None = None  # ``GpuCostSpec`` as JSON
    scheduling_policy: str = "fcfs"
    max_loras: int | None = None  # None: the default (``DeploymentSpec.max_loras``)


@dataclass(frozen=True, slots=True)
class PriceRecord:
    """One entry of a model's price schedule: from ``effective_from`` (None: the beginning), for
    the model or only for ``deployment``; amounts are decimal text per million tokens."""

    id: str
    model_id: str
    deployment_id: str | None
    deployment: str | None  # the deployment's name
    effective_from: datetime | None
    input_per_million: str
    output_per_million: str
    cached_input_per_million: str | None
    batch_discount_percent: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A stored model: every field of ``config.spec.ModelSpec``, its deployment by id and name.

    ``prices`` is its whole price schedule, history included, ordered by deployment (the
    model's own first) and start (``catalog_specs.model_spec`` says what is in force).
    """

    id: str
    name: str
    deployment_id: str
    deployment: str  # the deployment's name
    type: str
    aliases: tuple[str, ...]
    prices: tuple[PriceRecord, ...]
    max_output_tokens: int
    managed_by: str | None
    created_at: datetime
    updated_at: datetime
    #: Its canary split and fallback chain as the spec writes them (``config.spec.routes``).
    canary: tuple[dict[str, Any], ...] = ()
    fallbacks: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class CatalogData:
    """The whole stored catalog, read at one ``revision``; each part ordered by name."""

    revision: int
    providers: tuple[ProviderRecord, ...]
    deployments: tuple[DeploymentRecord, ...]
    models: tuple[ModelRecord, ...]
    adapters: tuple[AdapterRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class AdapterRecord:
    """A stored LoRA adapter (``tables_adapters.Adapter``): ``AdapterSpec``'s fields, its base
    model by id and by (current) name."""

    id: str
    name: str
    model_id: str
    base_model: str
    source: str
    description: str
    managed_by: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class FileOwner:
    """Whose files a caller sees: its team's, or — a key without a team — its principal's own."""

    team_id: str | None
    principal_id: str


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A stored file (``tables_files.File``); ``path`` is relative to the files folder."""

    id: str
    team_id: str | None
    principal_id: str
    key_id: str
    purpose: str
    filename: str
    bytes: int
    line_count: int
    status: str
    path: str
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A batch (``tables_batch.Batch``): what OpenAI's Batch object shows, and whose it is.

    ``completed``/``failed`` are counted from its lines while it runs and kept once it ends.
    ``times`` maps each of OpenAI's timestamp names that is set (``in_progress_at``, …).
    """

    id: str
    team_id: str | None
    principal_id: str
    key_id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    metadata: dict[str, str] | None
    errors: tuple[dict[str, Any], ...]
    total: int
    completed: int
    failed: int
    output_file_id: str | None
    error_file_id: str | None
    created_at: datetime
    expires_at: datetime
    times: dict[str, datetime]
    #: OpenAI's ``output_expires_after.seconds`` (None: its files are kept until deleted).
    output_expires_after_s: int | None = None


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request line of a new batch: where its bytes are in the input file."""

    line: int
    custom_id: str
    byte_offset: int
    byte_length: int


@dataclass(frozen=True, slots=True)
class ToValidate:
    """A ``validating`` batch as its check needs it: whose key, which endpoint, which file."""

    id: str
    key_id: str
    endpoint: str
    input_file_id: str


@dataclass(frozen=True, slots=True)
class ClaimedLine:
    """A line an executor holds under a lease, with what it needs to run it."""

    id: int
    batch_id: str
    line: int
    custom_id: str
    byte_offset: int
    byte_length: int
    attempts: int
    endpoint: str
    key_id: str
    input_file_id: str
    #: The batch's deadline and owning team: what the dispatcher orders lines by.
    expires_at: datetime | None = None
    team_id: str | None = None
    #: The batch's lines not yet recorded when this one was claimed (this one included): what
    #: the dispatcher weighs against the time left to promote a batch at risk.
    left: int | None = None


@dataclass(frozen=True, slots=True)
class LineOutcome:
    """A recorded line as the output and error files need it (``result`` None: never ran)."""

    id: int
    line: int
    custom_id: str
    state: str
    result: str | None
