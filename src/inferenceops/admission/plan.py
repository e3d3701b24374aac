"""Which counters one request must fit in: the policy turned into ledger ``Check``s.

Scopes are checked in a fixed order — key, team, model, team×model, then the
team's and the key's budgets — so the first failing check reported is the most
specific one. Per scope, the explicit rule for that subject wins over the
``"*"`` default. Counter names are stable strings shared by every replica.

Reservations: a request reserves 1 request, ``prompt + max output`` tokens,
1 concurrency slot and its maximum cost. The prompt is estimated from the
request body (one token per 3 bytes: an over-estimate for English text, so a
reservation errs on the safe side); settlement replaces every estimate with
the engine's reported usage.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferenceops.admission.ledger import Check, CheckKind
from inferenceops.platform.identity import ApiKey
from inferenceops.platform.policy import Policy, Price, RateLimit, Scope, period_window

BUDGET_MARGIN_S = 7 * 86400.0  # budget counters outlive their period by a week (for reports)


def estimate_prompt_tokens(body_size: int) -> int:
    return body_size // 3 + 1


@dataclass(frozen=True, slots=True)
class Plan:
    """The checks for one request, plus what settlement needs to price it."""

    checks: tuple[Check, ...]
    price: Price | None
    prompt_estimate: int
    max_output: int
    #: True when settlement must know the actual tokens (a TPM limit or a priced budget applies).
    needs_usage: bool


def plan_request(policy: Policy, key: ApiKey, model: str, prompt_estimate: int, max_output: int,
                 now: float) -> Plan:
    checks: list[Check] = []
    reserve_tokens = prompt_estimate + max_output
    team = key.team_id
    limit_checks(checks, policy, Scope.KEY, key.id, key.meter, reserve_tokens)
    if team is not None:
        limit_checks(checks, policy, Scope.TEAM, team, team, reserve_tokens)
    limit_checks(checks, policy, Scope.MODEL, model, model, reserve_tokens)
    if team is not None:
        limit_checks(checks, policy, Scope.TEAM_MODEL, (team, model), f"{team}/{model}", reserve_tokens)
    price = policy.price(model, now)
    max_cost = policy.max_cost(model, now, prompt_estimate, max_output)  # the prices in force now
    needs_usage = any(c.kind is CheckKind.TOKENS for c in checks)
    before = len(checks)
    budget_checks(checks, policy, key, max_cost or 0, now)
    needs_usage = needs_usage or (max_cost is not None and len(checks) > before)
    return Plan(tuple(checks), price, prompt_estimate, max_output, needs_usage)


def budget_checks(checks: list[Check], policy: Policy, key: ApiKey, amount: int, now: float) -> None:
    """Append a check per budget of the key's team and of the key, for the current periods."""
    for scope, subject, meter in ((Scope.TEAM, key.team_id, key.team_id),
                                  (Scope.KEY, key.id, key.meter)):
        if subject is None:
            continue
        for budget in policy.budgets(scope, subject):
            period_id, end = period_window(budget.period, now)
            checks.append(Check(
                CheckKind.BUDGET, f"bud:{scope.value}:{meter}:{period_id}", budget.limit, amount,
                f"{budget.period.value} budget of {policy.describe(scope, subject)}",
                hard=budget.hard, ttl_s=None if end is None else end - now + BUDGET_MARGIN_S))


def limit_checks(checks: list[Check], policy: Policy, scope: Scope, subject: str | tuple[str, str],
                 counter: str, reserve_tokens: int) -> None:
    """Append the checks of the limit on ``subject`` (if any) to ``checks``."""
    limit: RateLimit | None = policy.limit(scope, subject)
    if limit is None:
        return
    who = policy.describe(scope, subject)
    tag = f"{scope.value}:{counter}"
    if limit.rpm is not None:
        checks.append(Check(CheckKind.REQUESTS, f"rpm:{tag}", limit.rpm, 1,
                            f"requests per minute of {who}"))
    if limit.tpm is not None:
        checks.append(Check(CheckKind.TOKENS, f"tpm:{tag}", limit.tpm, reserve_tokens,
                            f"tokens per minute of {who}"))
    if limit.concurrency is not None:
        checks.append(Check(CheckKind.CONCURRENCY, f"con:{tag}", limit.concurrency, 1,
                            f"concurrent requests of {who}"))
