"""The Batch API's tables: one row per batch, one row per request line of its input file.

Declared on the same ``Base`` as ``store.tables`` (which imports this module at its end, so
``tables.metadata`` holds them and the migration test compares them); kept apart because
``tables.py`` is near the size where a module stops being readable.

``batches`` holds what OpenAI's Batch object shows (status, the nine timestamps, the files)
plus who owns it (``team_id``, or ``principal_id`` for a key without a team, exactly like
``files``) and the key it runs as. ``lease_owner``/``lease_until`` guard finalisation: the
executor that writes the output and error files holds the batch for that long, so two never
write the same batch at once and a crashed one's work is taken over when the lease ends.

``batch_requests``: each line's place in the input file (``byte_offset``/``byte_length``: the body is
read from the file when the line runs, never copied into the database), its state
(``batch.states`` draws the diagram), its lease while it runs, and once recorded the line
it contributes to the output or error file (``result``). Recording sets ``result`` in the
same UPDATE that ends the running state, guarded by the lease: a line is recorded once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from inferenceops.store.tables import Base, NullableJSON, _in

BATCH_STATES = ("validating", "failed", "in_progress", "finalizing", "completed", "expired",
                "cancelling", "cancelled")
REQUEST_STATES = ("pending", "running", "completed", "failed", "cancelled", "expired")
BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
COMPLETION_WINDOWS = ("24h", "1h")


#: A batch in one of these states still reads its input file.
UNFINISHED_BATCH = ("validating", "in_progress", "finalizing", "cancelling")


class Batch(Base):
    """A batch of the Batch API (see the module doc)."""

    __tablename__ = "batches"
    __table_args__ = (CheckConstraint(_in("status", BATCH_STATES), name="status"),
                      CheckConstraint(_in("endpoint", BATCH_ENDPOINTS), name="endpoint"),
                      CheckConstraint(_in("completion_window", COMPLETION_WINDOWS), name="window"),
                      Index(None, "team_id", "id"), Index(None, "principal_id", "id"),
                      Index(None, "status"), Index(None, "input_file_id"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str | None] = mapped_column(Text)
    principal_id: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(Text)
    endpoint: Mapped[str] = mapped_column(Text)
    input_file_id: Mapped[str] = mapped_column(Text)
    completion_window: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    user_metadata: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)
    errors: Mapped[list[Any] | None] = mapped_column(NullableJSON)
    total: Mapped[int] = mapped_column(Integer)
    completed: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    output_file_id: Mapped[str | None] = mapped_column(Text)
    error_file_id: Mapped[str | None] = mapped_column(Text)
    #: OpenAI's ``output_expires_after.seconds``: the output and error files expire this long
    #: after they are written (migration 0020); NULL: kept until deleted.
    output_expires_after_s: Mapped[int | None] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    in_progress_at: Mapped[datetime | None] = mapped_column()
    finalizing_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    failed_at: Mapped[datetime | None] = mapped_column()
    expired_at: Mapped[datetime | None] = mapped_column()
    cancelling_at: Mapped[datetime | None] = mapped_column()
    cancelled_at: Mapped[datetime | None] = mapped_column()


class BatchRequest(Base):
    """One request line of a batch (see the module doc)."""

    __tablename__ = "batch_requests"
    __table_args__ = (CheckConstraint(_in("state", REQUEST_STATES), name="state"),
                      UniqueConstraint("batch_id", "line"),
                      Index(None, "state", "id"), Index(None, "batch_id", "state"))

    # BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is the rowid.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(String(40), ForeignKey("batches.id"))
    line: Mapped[int] = mapped_column(Integer)
    custom_id: Mapped[str] = mapped_column(Text)
    byte_offset: Mapped[int] = mapped_column(BigInteger)
    byte_length: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    not_before: Mapped[datetime | None] = mapped_column()
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None] = mapped_column()
    status_code: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[str | None] = mapped_column(Text)
