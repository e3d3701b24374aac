"""The admin API's request and response bodies, and their conversion from store records.

API schemas are not table models: each ``*Out`` is built explicitly from a
store record by its ``of`` constructor, so a column added to the store never
leaks into the API by accident. Key schemas never carry a digest; only
``KeyCreated`` carries a secret, and only in the response that made it.
Request bodies forbid unknown fields, so a typo is a 422 naming the field.
No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inferenceops.admin.api import _values
from inferenceops.admin.principal import AdminPrincipal
from inferenceops.platform.policy import CURRENCIES, Period, from_nanos
from inferenceops.platform.policy import Scope as LimitScope
from inferenceops.platform.retention import MAX_DAYS
from inferenceops.store.records import (
    ApiKeyRecord,
    BudgetRecord,
    GrantRecord,
    LimitRecord,
    MembershipRecord,
    ServiceAccountRecord,
    SignInLinkRecord,
    TeamRecord,
    UserRecord,
)
from inferenceops.store.repo.admission import MAX_VALUE

T = TypeVar("T")
PlatformRole = Literal["platform-admin", "auditor", "billing"]
TeamRole = Literal["owner", "member", "viewer"]
Scope = Literal["inference", "batch", "admin"]
Name = Field(min_length=1, max_length=200)
MAX_OVERLAP_S = 30 * 24 * 3600
MAX_WEIGHT = 1000
#: A rate limit: a positive whole number (what a BIGINT column holds).
LimitValue = Annotated[int, Field(gt=0, le=MAX_VALUE)]
Email = Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """One page; pass ``next_after`` back as ``?after=`` for the next (null: last page)."""

    data: list[T]
    next_after: str | None


# ---- teams and members ------------------------------------------------------------------------

RetentionMode = Literal["none", "store", "zero"]
RETENTION_HELP = ("Request and response bodies: never stored (none, the default), stored redacted "
                  "for retention_days (store), or never written anywhere, logs included (zero)")
RetentionDays = Field(None, ge=1, le=MAX_DAYS, description="Days bodies are kept (store only)")


class TeamCreate(_Request):
    name: str = Name
    weight: int = Field(1, ge=1, le=1_000_000)
    retention: RetentionMode = Field("none", description=RETENTION_HELP)
    retention_days: int | None = RetentionDays

    @model_validator(mode="after")
    def _days_with_store(self) -> TeamCreate:
        if (self.retention == "store") != (self.retention_days is not None):
            raise ValueError("'retention_days' is required with retention store, and only with it")
        return self


class TeamOut(BaseModel):
    id: str
    name: str
    weight: int
    retention: RetentionMode
    retention_days: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: TeamRecord) -> TeamOut:
        return cls(id=r.id, name=r.name, weight=r.weight, retention=r.retention,  # type: ignore[arg-type]
                   retention_days=r.retention_days, created_at=r.created_at,
                   updated_at=r.updated_at)


class TeamPatch(_Request):
    """Only the fields sent change (``null`` is not a value, but for ``retention_days`` when
    ``retention`` leaves ``store``)."""

    weight: int | None = Field(None, ge=1, le=MAX_WEIGHT,
                               description="Fair-share weight when the queue is contended")
    retention: RetentionMode | None = Field(None, description=RETENTION_HELP)
    retention_days: int | None = RetentionDays

    @field_validator("weight", "retention")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must be a value, not null")
        return value


class MemberSet(_Request):
    role: TeamRole


class MemberAdd(_Request):
    """The user to add, by id or by email (exactly one), and their role."""

    user_id: str | None = Field(None, min_length=1, max_length=64)
    email: Email | None = None
    role: TeamRole


class MemberOut(BaseModel):
    team_id: str
    user_id: str
    role: str
    created_at: datetime

    @classmethod
    def of(cls, r: MembershipRecord) -> MemberOut:
        return cls(team_id=r.team_id, user_id=r.user_id, role=r.role, created_at=r.created_at)


# ---- users ------------------------------------------------------------------------------------

class UserCreate(_Request):
    email: Email
    display_name: str = Field("", max_length=200)
    platform_role: PlatformRole | None = None


class UserPatch(_Request):
    """Only the fields sent change; ``platform_role: null`` takes the role away."""

    platform_role: PlatformRole | None = None
    disabled: bool = False


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str
    platform_role: str | None
    disabled: bool
    created_at: datetime

    @classmethod
    def of(cls, r: UserRecord) -> UserOut:
        return cls(id=r.id, email=r.email, display_name=r.display_name, platform_role=r.platform_role,
                   disabled=r.disabled, created_at=r.created_at)


class SignInLinkCreate(_Request):
    """Link an external identity to the user: the token's ``iss`` and ``sub`` exactly as the IdP
    writes them, or ``issuer: "proxy"`` and the auth proxy's user header value."""

    issuer: str = Field(min_length=1, max_length=1024)
    subject: str = Field(min_length=1, max_length=1024)


class SignInLinkOut(BaseModel):
    id: str
    issuer: str
    subject: str
    user_id: str
    method: Literal["email", "provisioned", "admin"]
    linked_by: str
    created_at: datetime

    @classmethod
    def of(cls, r: SignInLinkRecord) -> SignInLinkOut:
        return cls(id=r.id, issuer=r.issuer, subject=r.subject, user_id=r.user_id,
                   method=r.method,  # type: ignore[arg-type]  # the table's CHECK keeps it one of these
                   linked_by=r.linked_by, created_at=r.created_at)


# ---- service accounts -------------------------------------------------------------------------

class ServiceAccountCreate(_Request):
    team_id: str = Field(min_length=1)
    name: str = Name


class ServiceAccountOut(BaseModel):
    id: str
    team_id: str
    name: str
    created_at: datetime

    @classmethod
    def of(cls, r: ServiceAccountRecord) -> ServiceAccountOut:
        return cls(id=r.id, team_id=r.team_id, name=r.name, created_at=r.created_at)


# ---- keys -------------------------------------------------------------------------------------

class KeyCreate(_Request):
    """Owner: ``user_id`` or ``service_account_id`` (neither: the caller's own user)."""

    name: str = Field(max_length=200)
    team_id: str | None = None
    user_id: str | None = None
    service_account_id: str | None = None
    scopes: list[Scope] = Field(min_length=1)
    allowed_models: list[str] | None = None
    expires_at: _values.Timestamp | None = None
    background_only: bool = Field(False, description="Its requests always queue as background work")


class KeyRotate(_Request):
    overlap_s: float = Field(0, ge=0, le=MAX_OVERLAP_S)


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    team_id: str | None
    user_id: str | None
    service_account_id: str | None
    scopes: list[str]
    allowed_models: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_from_id: str | None
    background_only: bool
    created_by: str | None = Field(None, description="The actor that created it (null: unknown, "
                                   "for keys older than this field)")

    @classmethod
    def of(cls, r: ApiKeyRecord) -> KeyOut:
        return cls(
            id=r.id, name=r.name, prefix=r.prefix, team_id=r.team_id, user_id=r.user_id,
            service_account_id=r.service_account_id, scopes=sorted(r.scopes),
            allowed_models=None if r.allowed_models is None else sorted(r.allowed_models),
            created_at=r.created_at, expires_at=r.expires_at, revoked_at=r.revoked_at,
            last_used_at=r.last_used_at, rotated_from_id=r.rotated_from_id,
            background_only=r.background_only, created_by=r.created_by)


class KeyCreated(KeyOut):
    secret: str = Field(description="The key itself. Shown in this response only; store it now.")

    @classmethod
    def with_secret(cls, r: ApiKeyRecord, secret: str) -> KeyCreated:
        return cls(**KeyOut.of(r).model_dump(), secret=secret)


# ---- admission: limits and budgets -----------------------------------------------------------

class LimitSet(_Request):
    """A subject and its limits. ``scope`` says which ids apply: key → ``key_id``; team →
    ``team_id``; model → ``model``; team_model → ``team_id`` + ``model``. Replaces the
    subject's limit whole: a value left out is unlimited."""

    scope: LimitScope
    key_id: str | None = None
    team_id: str | None = None
    model: str | None = Field(None, max_length=200)
    rpm: LimitValue | None = Field(None, description="Requests per minute")
    tpm: LimitValue | None = Field(None, description="Tokens per minute")
    concurrency: LimitValue | None = Field(None, description="Requests in flight at once")


class LimitOut(BaseModel):
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

    @classmethod
    def of(cls, r: LimitRecord) -> LimitOut:
        return cls(id=r.id, scope=r.scope, key_id=r.key_id, team_id=r.team_id, model=r.model,
                   rpm=r.rpm, tpm=r.tpm, concurrency=r.concurrency, created_at=r.created_at,
                   updated_at=r.updated_at)


class BudgetSet(_Request):
    """A team's or key's budget for one period; replaces the one it has for that period.

    ``amount`` is decimal text (``"12.50"``; a JSON number is read as its decimal text).
    ``currency`` defaults to the platform's, and must be it.
    """

    scope: Literal["team", "key"]
    key_id: str | None = None
    team_id: str | None = None
    amount: str = Field(examples=["500", "12.50"])
    currency: str | None = Field(None, examples=["USD"])
    period: Period
    mode: Literal["hard", "soft"] = Field("hard", description="hard refuses requests; soft only alerts")

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError('give the amount as decimal text, such as "12.50"')
        _values.amount_nanos(value)  # ValueError names what is wrong: not a number, <= 0, too large
        return str(value).strip()

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if code not in CURRENCIES:
            raise ValueError(f"unknown currency {value!r}: use an ISO 4217 code such as USD")
        return code

    @property
    def amount_nanos(self) -> int:
        return _values.amount_nanos(self.amount)


class BudgetOut(BaseModel):
    id: str
    scope: str
    key_id: str | None
    team_id: str | None
    amount: str = Field(description="Decimal text, e.g. \"12.5\"")
    currency: str
    period: str
    mode: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: BudgetRecord) -> BudgetOut:
        return cls(id=r.id, scope=r.scope, key_id=r.key_id, team_id=r.team_id,
                   amount=from_nanos(r.amount_nanos), currency=r.currency, period=r.period,
                   mode=r.mode, created_at=r.created_at, updated_at=r.updated_at)


# ---- grants, audit, me ------------------------------------------------------------------------

class GrantOut(BaseModel):
    team_id: str
    model: str
    created_at: datetime

    @classmethod
    def of(cls, r: GrantRecord) -> GrantOut:
        return cls(team_id=r.team_id, model=r.model, created_at=r.created_at)


class AuditOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source: str | None

    @classmethod
    def of(cls, r: Any) -> AuditOut:
        return cls(seq=r.seq, at=r.at, actor=r.actor, action=r.action, target_type=r.target_type,
                   target_id=r.target_id, before=r.before, after=r.after, source=r.source)


class PrincipalOut(BaseModel):
    actor: str
    user_id: str | None
    platform_role: str | None
    team_roles: dict[str, str]
    source: str | None
    via: str | None = Field(None, description="Who the identity provider or auth proxy said "
                            "you are, when you act as your user (`actor` is `user:<id>`)")

    @classmethod
    def of(cls, p: AdminPrincipal) -> PrincipalOut:
        roles: Mapping[str, str] = p.team_roles
        return cls(actor=p.actor, user_id=p.user_id, platform_role=p.platform_role,
                   team_roles=dict(roles), source=p.source, via=p.via)
