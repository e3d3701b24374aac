"""The model catalog: providers, deployments, models and the models' price schedules.

Each row holds a spec of the platform file (``config.spec``). Declared on ``tables.Base``
(``tables`` imports this module at its end); migrations 0003, 0009 and later ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from inferenceops.store import ids
from inferenceops.store.tables import Base, NullableJSON, PortableJSON, utcnow


class Provider(Base):
    """An upstream endpoint (``config.spec.ProviderSpec``) and its API key, encrypted (``store.credentials``).

    ``credentials_encrypted`` is the AES-GCM blob of the key, bound to this row's id. ``managed_by``
    says who owns the row: NULL for the admin API, ``"config"`` for rows applied from a
    platform file (which re-applies them).
    """

    __tablename__ = "providers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: ids.new_id(ids.PROVIDER))
    name: Mapped[str] = mapped_column(Text, unique=True)
    base_url: Mapped[str] = mapped_column(Text)
    dialect: Mapped[str] = mapped_column(Text)
    credentials_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    api_key_env: Mapped[str | None] = mapped_column(Text)
    managed_by: Mapped[str | None] = mapped_column(Text)


class Deployment(Base):
    """Every field of ``config.spec.DeploymentSpec``; its provider by id.

    The provider FK has no ON DELETE action (NO ACTION, as 0001 made it): a provider cannot be
    deleted while a deployment names it, like RESTRICT. (Changing it to RESTRICT would rebuild
    the table on SQLite, which fails under ``foreign_keys=ON`` while models reference it.)
    ``replicas`` is the spec's value as JSON: a count (simulators), a list of URLs (openai), or
    JSON ``null`` for the spec's default — it stays NOT NULL, as 0001 made it. ``timeouts`` and
    ``queue`` hold every value of their spec. Server defaults fill rows written before 0003.
    """

    __tablename__ = "deployments"
    __table_args__ = (Index(None, "provider_id"),)

    id: Mapped[str] = mapped_column(
        String(40), primary_key=True, default=lambda: ids.new_id(ids.DEPLOYMENT))
    name: Mapped[str] = mapped_column(Text, unique=True)
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("providers.id"))
    engine: Mapped[str] = mapped_column(Text)
    served_model: Mapped[str] = mapped_column(Text)
    replicas: Mapped[int | list[str] | None] = mapped_column(PortableJSON, nullable=False)
    capacity: Mapped[int | None] = mapped_column(Integer)
    timeouts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    profile: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    api_key_env: Mapped[str | None] = mapped_column(Text)
    max_connections: Mapped[int] = mapped_column(Integer, server_default=text("256"))
    # How a replica is picked (a ``routing`` strategy's name); rows before 0005 get the default.
    routing: Mapped[str] = mapped_column(Text, server_default=text("'least_outstanding'"))
    # The engines' queue order, "fcfs" or "priority" (0021).
    scheduling_policy: Mapped[str] = mapped_column(Text, server_default=text("'fcfs'"))
    # ``config.spec.GpuCostSpec`` as JSON (its amounts as decimal text); NULL: none declared.
    gpu_cost: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)
    queue: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    managed_by: Mapped[str | None] = mapped_column(Text)
    # LoRA adapters kept loaded per replica (``DeploymentSpec.max_loras``); NULL: the default.
    max_loras: Mapped[int | None] = mapped_column(Integer)


class Model(Base):
    """Every field of ``config.spec.ModelSpec`` but its prices (``ModelPrice``); its deployment by
    id (NO ACTION on delete, as above).

    Names and aliases are unique across all models: the name by a constraint, the aliases by the
    repository (under the catalog lock).
    """

    __tablename__ = "models"
    __table_args__ = (Index(None, "deployment_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: ids.new_id(ids.MODEL))
    name: Mapped[str] = mapped_column(Text, unique=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"))
    type: Mapped[str] = mapped_column(Text, default="chat")
    aliases: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    max_output_tokens: Mapped[int] = mapped_column(Integer, server_default=text("4096"))
    managed_by: Mapped[str | None] = mapped_column(Text)
    #: ``{"canary": [...], "fallbacks": [...]}`` as the spec writes them, deployments and models
    #: by name (checked on write: ``repo.model_routes``); NULL when the model has neither.
    routing: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)


class ModelPrice(Base):
    """One entry of a model's price schedule (``metering.prices``): from ``effective_from`` on
    (NULL: from the beginning), for the model or, with ``deployment_id``, for the requests that
    deployment serves.

    Amounts are ``PriceSpec``'s decimal text as written (per million tokens, the platform
    currency; ``cached_input_per_million`` NULL: cached tokens cost input), validated by the
    repository, which also keeps one entry per (model, deployment, effective_from) under the
    catalog lock. Deleting the model deletes its schedule; a deployment cannot be deleted while
    a price names it (NO ACTION).
    """

    __tablename__ = "model_prices"
    __table_args__ = (Index(None, "model_id"), Index(None, "deployment_id"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: ids.new_id(ids.PRICE))
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    deployment_id: Mapped[str | None] = mapped_column(ForeignKey("deployments.id"))
    effective_from: Mapped[datetime | None] = mapped_column()
    input_per_million: Mapped[str] = mapped_column(Text)
    output_per_million: Mapped[str] = mapped_column(Text)
    cached_input_per_million: Mapped[str | None] = mapped_column(Text)
    batch_discount_percent: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
