"""Verifying the audit log of a database, for ``inferenceops audit verify`` and operators.

The one place the audit package touches the store: it streams the log in seq
order from one read snapshot (``store.repo.iter_audit``) through a
``ChainVerifier``, so memory stays flat however long the log is. Not on any
hot path; opens and closes its own ``Database``. Store failures surface as
``store.errors`` (the CLI turns them into exit messages).
"""

from __future__ import annotations

from contextlib import aclosing

from inferenceops.audit.verifier import Anchor, ChainVerifier, VerifyReport, format_report
from inferenceops.store.db import Database
from inferenceops.store.repo.audit import iter_audit

__all__ = ["Anchor", "VerifyReport", "format_report", "verify_store"]


async def verify_store(url: str, *, anchor: Anchor | None = None, batch: int = 1000) -> VerifyReport:
    """Verify the audit chain in the database at ``url`` (against ``anchor``, if given)."""
    db = Database(url, pool_size=1)
    try:
        verifier = ChainVerifier(anchor)
        async with aclosing(iter_audit(db, batch=batch)) as entries:
            async for entry in entries:
                if not verifier.feed(entry):
                    break
        return verifier.report()
    finally:
        await db.close()
