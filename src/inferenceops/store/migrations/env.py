"""Alembic environment: runs migrations on the connection ``store.migrate`` passes in.

It never creates engines, reads ini files or configures logging: the caller
(``inferenceops.store.migrate``) owns the engine, the cross-process lock and
the transaction, and hands a synchronous connection in
``config.attributes["connection"]`` (from ``AsyncConnection.run_sync``).
``render_as_batch`` is on for SQLite, whose ALTER TABLE support is limited.
"""

from __future__ import annotations

from alembic import context

from inferenceops.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - misuse, not a runtime path
    raise RuntimeError("run migrations through inferenceops.store.migrate, which supplies a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
