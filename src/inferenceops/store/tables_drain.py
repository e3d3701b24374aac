"""Drained replicas: operational state an operator sets, apart from a deployment's spec.

One row per drained replica (its id, ``<deployment>-<i>`` as the catalog names it). Kept
out of ``deployments`` on purpose: a platform file re-applied (``inferenceops apply``)
rewrites a deployment's spec but never undrains a replica an operator took out. The rows
go with their deployment (ON DELETE CASCADE). Declared on ``tables.Base`` (``tables``
imports this module at its end).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inferenceops.store.tables import Base, utcnow


class ReplicaDrain(Base):
    __tablename__ = "replica_drains"

    deployment_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    replica: Mapped[str] = mapped_column(Text, primary_key=True)
    drained_at: Mapped[datetime] = mapped_column(default=utcnow)
    drained_by: Mapped[str | None] = mapped_column(Text)
