"""Hearing of store changes as they commit: PostgreSQL ``LISTEN`` on the revision channel.

Every mutation that moves the snapshot revision sends ``NOTIFY`` on
``REVISION_CHANNEL`` in its transaction (PostgreSQL delivers it at commit, to
every listening connection of every replica). A serving process listens on
one dedicated connection, outside the pool, and rebuilds its snapshot when
told — the periodic poll stays as the safety net for lost connections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inferenceops.store.db import parse_url

REVISION_CHANNEL = "inferenceops_revision"


class RevisionListener:
    """One LISTEN connection; ``on_change`` runs for every notification, ``on_lost`` if it drops."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    @classmethod
    async def open(cls, url: str, on_change: Callable[[], None],
                   on_lost: Callable[[], None]) -> RevisionListener:
        import asyncpg  # the postgres extra; only imported where PostgreSQL is the store

        dsn = parse_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn, timeout=10)
        connection.add_termination_listener(lambda _conn: on_lost())
        await connection.add_listener(REVISION_CHANNEL, lambda *_args: on_change())
        return cls(connection)

    @property
    def alive(self) -> bool:
        return not self._connection.is_closed()

    async def close(self) -> None:
        if not self._connection.is_closed():
            await self._connection.close(timeout=5)
