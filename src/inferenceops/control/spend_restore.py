"""A worker's admission counters rebuilt from the usage ledger when it starts.

The embedded default counts limits and budgets in each worker's memory
(``MemoryLedger``), and that memory used to start at zero on every restart,
crash or deploy: a team that had spent its monthly budget could spend it again.
Now, at start and before the worker is ready, the snapshot feed has every
budget's spend in its current period, and every per-minute request and token
limit's use in the last minute, summed from the usage ledger and put into the
counters (``restore_spend``). With Redis, Redis is the live counter (it outlives
the workers) and the ledger the record: nothing is restored.

What the ledger does not hold is not restored: records a killed process had not
yet written (at most ``INFERENCEOPS_OUTBOX_FLUSH_S`` of them, docs/operations.md);
a graceful stop writes everything first. Requests still running elsewhere are
not reservations here; they settle into their own worker. With several workers on
the memory ledger, each worker starts from the whole ledger (each counts per worker
from then on, as before), which errs on the side of refusing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from inferenceops.admission.ledger import Check, CheckKind
from inferenceops.admission.memory_ledger import MemoryLedger
from inferenceops.admission.plan import BUDGET_MARGIN_S, limit_checks
from inferenceops.platform import ApiKey, Snapshot
from inferenceops.platform.policy import Period, Policy, Scope, period_start, period_window
from inferenceops.store import Database
from inferenceops.store.repo.usage_totals import By, Measure, totals_since

log = logging.getLogger("inferenceops.control")

WINDOW_S = 60.0  # the per-minute limits' window
_GROUPING: dict[Scope, By] = {Scope.KEY: "meter", Scope.TEAM: "team", Scope.MODEL: "model",
                              Scope.TEAM_MODEL: "team_model"}


async def restore_spend(db: Database, snapshot: Snapshot, ledger: MemoryLedger,
                        now: float | None = None) -> int:
    """Put the ledger's current-period spend and last-minute use into ``ledger``; returns how
    many counters were set."""
    now = time.time() if now is None else now
    policy, keys = snapshot.policy, list(snapshot.identity.keys())
    if policy.empty:
        return 0
    sums = _Sums(db)
    restored = await _budgets(policy, keys, sums, ledger, now)
    restored += await _windows(policy, keys, sums, ledger, now)
    if restored:
        log.info("admission counters rebuilt from the usage ledger: %d", restored)
    return restored


class _Sums:
    """Ledger totals, each (grouping, measure, since) read once."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._read: dict[tuple[By, Measure, float], dict[str, int]] = {}

    async def get(self, by: By, measure: Measure, since: float) -> dict[str, int]:
        found = self._read.get((by, measure, since))
        if found is None:
            async with self._db.read("summing the usage ledger") as tx:
                found = await totals_since(tx, datetime.fromtimestamp(since, UTC), by=by,
                                           measure=measure)
            self._read[by, measure, since] = found
        return found


async def _budgets(policy: Policy, keys: Sequence[ApiKey], sums: _Sums, ledger: MemoryLedger,
                   now: float) -> int:
    periods: dict[Scope, set[Period]] = {}
    for scope, _, budget in policy.budget_rules():
        periods.setdefault(scope, set()).add(budget.period)
    restored = 0
    for scope, wanted in periods.items():
        for period in wanted:
            period_id, end = period_window(period, now)
            ttl = None if end is None else end - now + BUDGET_MARGIN_S
            if scope is Scope.TEAM:
                spent = await sums.get("team", "cost", period_start(period, now))
                subjects = [(team, team) for team in spent]
            else:
                spent = await sums.get("meter", "cost", period_start(period, now))
                subjects = [(key.id, key.meter) for key in keys if key.meter in spent]
            for subject, meter in subjects:
                if any(b.period is period for b in policy.budgets(scope, subject)):
                    ledger.restore_spent(f"bud:{scope.value}:{meter}:{period_id}", spent[meter], ttl)
                    restored += 1
    return restored


async def _windows(policy: Policy, keys: Sequence[ApiKey], sums: _Sums, ledger: MemoryLedger,
                   now: float) -> int:
    scopes = {scope for scope, _, limit in policy.limit_rules()
              if limit.tpm is not None or limit.rpm is not None}
    since = now - WINDOW_S
    restored = 0
    for scope in scopes:
        by = _GROUPING[scope]
        tokens = await sums.get(by, "tokens", since)
        requests = await sums.get(by, "requests", since)
        subjects: list[tuple[str | tuple[str, str], str]]
        if scope is Scope.KEY:
            subjects = [(key.id, key.meter) for key in keys
                        if key.meter in tokens or key.meter in requests]
        elif scope is Scope.TEAM_MODEL:  # a team id has no "/", a model name may
            subjects = [((name.partition("/")[0], name.partition("/")[2]), name)
                        for name in {*tokens, *requests}]
        else:
            subjects = [(name, name) for name in {*tokens, *requests}]
        for subject, counter in subjects:
            checks: list[Check] = []
            limit_checks(checks, policy, scope, subject, counter, 0)
            for check in checks:
                used = (tokens if check.kind is CheckKind.TOKENS else requests).get(counter, 0)
                if check.kind in (CheckKind.TOKENS, CheckKind.REQUESTS) and used:
                    ledger.restore_window(check, used)
                    restored += 1
    return restored
