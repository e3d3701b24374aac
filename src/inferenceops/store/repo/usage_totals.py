"""Sums over the usage ledger: what each team, key lineage or model spent or used since a time.

Read at a worker's start to rebuild its in-memory admission counters
(``control.spend_restore``): a budget's spend in its current period, a token limit's
use in the last minute. Keys are summed by lineage (``api_keys.lineage_id``, else the
key itself), as per-key budgets count a key and the keys rotated from it together.
Indexed by ``at`` (and ``team_id, at``); one grouped query per call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.store.errors import translating
from inferenceops.store.tables_identity import ApiKey
from inferenceops.store.tables_usage import UsageRow

By = Literal["team", "meter", "model", "team_model"]
Measure = Literal["cost", "tokens", "requests"]


async def totals_since(session: AsyncSession, since: datetime, *, by: By,
                       measure: Measure) -> dict[str, int]:
    """{subject: sum} of cost (nano-units), tokens (prompt + completion) or requests for records
    at or after ``since``; subjects as admission names its counters (``team/model`` for a pair)."""
    amount = (func.sum(UsageRow.cost_nanos) if measure == "cost" else
              func.sum(UsageRow.prompt_tokens + UsageRow.completion_tokens) if measure == "tokens"
              else func.count())
    stmt: Any  # three shapes of row; each is unpacked the same way below
    if by == "meter":
        meter = func.coalesce(ApiKey.lineage_id, UsageRow.key_id)
        stmt = (select(meter, amount).select_from(UsageRow)
                .outerjoin(ApiKey, ApiKey.id == UsageRow.key_id).group_by(meter))
    elif by == "team_model":
        stmt = (select(UsageRow.team_id, UsageRow.model, amount)
                .group_by(UsageRow.team_id, UsageRow.model))
    else:
        column = UsageRow.team_id if by == "team" else UsageRow.model
        stmt = select(column, amount).group_by(column)
    stmt = stmt.where(UsageRow.at >= since)
    found: dict[str, int] = {}
    with translating("summing the usage ledger"):
        for row in await session.execute(stmt):
            *subject, total = row
            if None in subject or not total:
                continue
            found["/".join(subject)] = int(total)
    return found
