"""The Files API's table: one row per file uploaded or written for a batch (``batch/``).

Declared on ``tables.Base`` (``tables`` imports this module at its end); migration 0013.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inferenceops.store.tables import Base, _in

FILE_PURPOSES = ("batch", "batch_output")
FILE_STATES = ("uploaded", "processed", "error")


class File(Base):
    """A file of the Files API (``batch/``): whose it is and what it holds; its bytes are on disk.

    ``path`` is the file's name under the configured files folder (never absolute, so the
    folder can move). ``team_id`` is the owning team; a key without a team owns its files
    through ``principal_id``. Ids sort by creation time (``ids.new_sortable_id``), so a
    listing pages on the id alone. No foreign keys: like the usage ledger, the record of a
    file outlives the key that uploaded it, and batches will refer to it by id.
    """

    __tablename__ = "files"
    __table_args__ = (CheckConstraint(_in("purpose", FILE_PURPOSES), name="purpose"),
                      CheckConstraint(_in("status", FILE_STATES), name="status"),
                      CheckConstraint("size_bytes >= 0 AND line_count >= 0", name="counts"),
                      Index(None, "team_id", "id"), Index(None, "principal_id", "id"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str | None] = mapped_column(Text)
    principal_id: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    line_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
