"""LoRA adapters on the models: every field of ``config.spec.adapters.AdapterSpec``.

``adapters``: one row per adapter; ``name`` is unique (and, checked by the repository under
the catalog lock, no model's name or alias); ``model_id`` is its base model, a foreign key
with no ON DELETE action — a model cannot be deleted while an adapter names it (the
repository refuses first, naming the adapters). ``managed_by`` as for the other catalog
rows (NULL: the admin API; ``"config"``: a platform file).

Declared on ``tables.Base`` (``tables`` imports this module at its end); migration 0022.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inferenceops.store import ids
from inferenceops.store.tables import Base, utcnow


class Adapter(Base):
    __tablename__ = "adapters"
    __table_args__ = (Index(None, "model_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True,
                                    default=lambda: ids.new_id(ids.ADAPTER))
    name: Mapped[str] = mapped_column(Text, unique=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"))
    source: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    managed_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
