"""The tamper-evident audit log's rules: the hash chain and its verification (pure, no I/O).

Every control-plane mutation appends an entry — who (``actor``) did what
(``action``) to which target, the JSON ``before``/``after``, and where from
(``source``) — in the same transaction as the mutation
(``store.repo.append_audit``). Entries carry a ``seq`` (1, 2, 3, …) and a
SHA-256 ``hash`` over the previous entry's hash and all their fields, so the
log is one chain from ``GENESIS``.

    platform.audit_chain  canonical encoding, entry_hash, GENESIS (the format; never change v1;
                  pure, so the store can use it without importing this package)
    verifier.py   verify / ChainVerifier, VerifyReport, Anchor, format_report
    check.py      verify_store(url): verify a database's log (imports the store;
                  import it as ``inferenceops.audit.check``: not re-exported here, so
                  importing this package never loads the store)

What verification proves and cannot prove (details in ``verifier``): an edit,
insertion or deletion in the middle is detected unless every later entry was
rewritten too; a deleted tail, or a wholesale rewrite by someone with write
access, is detected only against an ``Anchor`` (seq + hash) recorded outside
the database. The log is evidence of tampering, not protection against it.

``before``/``after`` must never hold secrets: callers pass records without key
digests, credentials or tokens (``append_audit`` refuses raw bytes).
"""

from inferenceops.audit.verifier import (
    Anchor,
    ChainVerifier,
    Problem,
    VerifyReport,
    format_report,
    verify,
)
from inferenceops.platform.audit_chain import GENESIS, Chained, canonical_json, entry_hash, hash_of

__all__ = [
    "GENESIS", "Anchor", "ChainVerifier", "Chained", "Problem", "VerifyReport", "canonical_json",
    "entry_hash", "format_report", "hash_of", "verify",
]
