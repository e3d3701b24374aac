"""``GET /v1/quota``: a key's own limits, current use and remaining budget.

A use-case team sees exactly the counters its requests are checked against —
its key's and its team's limits, the model limits of the models it may use,
and its budgets for the current periods — read from the same ledger that
admits requests (one read, nothing reserved). Other teams' names and use are
never shown.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from inferenceops.admission.ledger import Check, CheckKind, Ledger
from inferenceops.admission.plan import BUDGET_MARGIN_S, budget_checks, limit_checks
from inferenceops.platform import ApiKey, Snapshot
from inferenceops.platform.policy import Scope, from_nanos

_UNITS = {CheckKind.REQUESTS: ("requests_per_minute", "requests"),
          CheckKind.TOKENS: ("tokens_per_minute", "tokens"),
          CheckKind.CONCURRENCY: ("concurrent_requests", "requests")}


async def quota_document(ledger: Ledger, snapshot: Snapshot, key: ApiKey) -> dict[str, Any]:
    policy = snapshot.policy
    now = time.time()
    checks: list[Check] = []
    scopes: list[tuple[str, str | None]] = []

    def add(scope: Scope, subject: str | tuple[str, str], counter: str, model: str | None) -> None:
        before = len(checks)
        limit_checks(checks, policy, scope, subject, counter, 0)
        scopes.extend((scope.value, model) for _ in range(len(checks) - before))

    add(Scope.KEY, key.id, key.meter, None)
    if key.team_id is not None:
        add(Scope.TEAM, key.team_id, key.team_id, None)
    for model in snapshot.catalog.models:
        if snapshot.identity.may_use(key, model.name):
            add(Scope.MODEL, model.name, model.name, model.name)
            if key.team_id is not None:
                add(Scope.TEAM_MODEL, (key.team_id, model.name), f"{key.team_id}/{model.name}",
                    model.name)
    states = await ledger.read(checks) if checks else ()
    limits = []
    for check, state, (scope, model_name) in zip(checks, states, scopes, strict=True):
        name, unit = _UNITS[check.kind]
        limits.append({"scope": scope, "model": model_name, "limit": name, "description": check.label,
                       "unit": unit, "value": check.limit, "used": state.used,
                       "remaining": state.remaining, "reset_seconds": round(state.reset_s, 3)})
    budgets = []
    budget_list: list[Check] = []
    budget_checks(budget_list, policy, key, 0, now)
    for check in budget_list:
        spent, reserved = await ledger.budget_totals(check.counter)
        ends = None if check.ttl_s is None else now + check.ttl_s - BUDGET_MARGIN_S
        budgets.append({
            "scope": check.counter.split(":")[1], "description": check.label,
            "mode": "hard" if check.hard else "soft", "currency": policy.currency,
            "limit": from_nanos(check.limit), "spent": from_nanos(spent),
            "reserved": from_nanos(reserved),
            "remaining": from_nanos(max(0, check.limit - spent - reserved)),
            "period_ends_at": None if ends is None else
            datetime.fromtimestamp(round(ends), UTC).isoformat().replace("+00:00", "Z"),
        })
    return {"object": "quota", "key": {"id": key.id, "prefix": key.prefix},
            "team_id": key.team_id, "limits": limits, "budgets": budgets}
