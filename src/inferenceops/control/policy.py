"""The admission policy a snapshot serves: the platform file's rules and the store's, together.

Teams are resolved by name; where both sides set a rule for one subject (a team's body
retention included), the stricter applies (``platform.policy.Policy``). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from inferenceops.admission.config import StaticPolicy
from inferenceops.control.guardrails import merge_guardrails
from inferenceops.platform.policy import (
    Budget,
    BudgetRule,
    LimitRule,
    ModelPrices,
    Period,
    Policy,
    RateLimit,
    Scope,
)
from inferenceops.platform.retention import DEFAULT, NONE_MODE, Retention, stricter
from inferenceops.store.records import IdentityData
from inferenceops.store.records_guardrails import StoredGuardrails


def assemble_policy(static: StaticPolicy, prices: Mapping[str, ModelPrices] | None,
                    data: IdentityData, guardrails: StoredGuardrails | None = None) -> Policy:
    """The platform YAML's rules and the store's, teams resolved by name (see ``Policy``);
    guardrail policies merged as ``control.guardrails`` says."""
    team_ids = {t.name: t.id for t in data.teams}
    weights = {t.id: t.weight for t in data.teams}
    weights.update(static.team_weights(team_ids))
    retention = {t.id: Retention(t.retention, t.retention_days) for t in data.teams
                 if t.retention != NONE_MODE}
    for team_id, from_file in static.team_retention(team_ids).items():
        retention[team_id] = stricter(retention.get(team_id, DEFAULT), from_file)
    # The casts are sound: each table's ``subject_columns`` CHECK constraint (store.tables)
    # guarantees that the columns a row's scope names are set.
    limits = list(static.limit_rules(team_ids))
    for row in data.limits:
        scope = Scope(row.scope)
        subject = cast(str | tuple[str, str], {
            Scope.KEY: row.key_id, Scope.TEAM: row.team_id, Scope.MODEL: row.model,
            Scope.TEAM_MODEL: (row.team_id, row.model)}[scope])
        limits.append(LimitRule(scope, subject, RateLimit(row.rpm, row.tpm, row.concurrency)))
    budgets = list(static.budget_rules(team_ids))
    for b in data.budgets:
        owner = cast(str, b.team_id if b.scope == "team" else b.key_id)
        budgets.append(BudgetRule(Scope(b.scope), owner,
                                  Budget(b.amount_nanos, Period(b.period), b.mode == "hard")))
    return Policy(currency=static.currency, limits=limits, budgets=budgets, team_weights=weights,
                  prices=prices, team_names={t.id: t.name for t in data.teams},
                  retention=retention,
                  guardrails=merge_guardrails(static.guardrails, guardrails, team_ids))
