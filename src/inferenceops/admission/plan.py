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

What applies to a request depends on the policy, the key and the model only:
which rules, their counter names and labels. ``plan_request`` works that out
once per (policy, key, model) and keeps it in the policy's ``memo`` (a new
snapshot's policy starts afresh, so it never goes stale); per request it adds
only what the request itself decides — the token and money amounts — and the
budget periods of the day.
"""

from __future__ import annotations

from inferenceops.admission.ledger import Check, CheckKind
from inferenceops.platform.identity import ApiKey
from inferenceops.platform.policy import (
    DAY_S,
    Budget,
    Policy,
    RateLimit,
    Scope,
    period_window,
)
from inferenceops.values import immutable

BUDGET_MARGIN_S = 7 * 86400.0  # budget counters outlive their period by a week (for reports)
#: How many (key, model) pairs' rules a policy remembers for plans (the oldest go first),
#: under ``MEMO_KEY`` in its ``memo``.
TEMPLATES = 4096
MEMO_KEY = "admission.plan"

_TOKENS, _BUDGET = CheckKind.TOKENS, CheckKind.BUDGET


def estimate_prompt_tokens(body_size: int) -> int:
    return body_size // 3 + 1


@immutable
class Plan:
    """The checks for one request, and the token amounts they reserve for.

    No price: settlement prices a request at the price in force for the deployment that
    served it (``pipeline.settle``), which only the answer tells.
    """

    checks: tuple[Check, ...]
    prompt_estimate: int
    max_output: int
    #: True when settlement must know the actual tokens (a TPM limit or a priced budget applies).
    needs_usage: bool


class _Template:
    """What applies to every request of one key to one model under one policy.

    ``limits`` are the limit checks in order, shared by every plan (they are never
    mutated): all but TOKENS checks are complete as they are; a TOKENS check is copied
    with the request's own amount. ``budgets`` are (counter name without the period,
    budget, label); ``windows`` is (UTC day, (counter name, period end) per budget) for
    the day last asked, replaced whole when the day changes.
    """

    __slots__ = ("limits", "has_tokens", "budgets", "windows")

    def __init__(self, policy: Policy, key: ApiKey, model: str) -> None:
        checks: list[Check] = []
        limit_checks(checks, policy, Scope.KEY, key.id, key.meter, 0)
        if key.team_id is not None:
            limit_checks(checks, policy, Scope.TEAM, key.team_id, key.team_id, 0)
        limit_checks(checks, policy, Scope.MODEL, model, model, 0)
        if key.team_id is not None:
            limit_checks(checks, policy, Scope.TEAM_MODEL, (key.team_id, model),
                         f"{key.team_id}/{model}", 0)
        self.limits = tuple(checks)
        self.has_tokens = any(c.kind is _TOKENS for c in checks)
        self.budgets = _budgets_of(policy, key)
        self.windows: tuple[int, tuple[tuple[str, float | None], ...]] = (-1, ())

    def windows_of(self, now: float) -> tuple[tuple[str, float | None], ...]:
        """(counter, period end) of each budget for the periods containing ``now``."""
        day = int(now // DAY_S)  # the period windows change only with the UTC day
        windows = self.windows
        if windows[0] != day:
            current = []
            for prefix, budget, _ in self.budgets:
                period_id, end = period_window(budget.period, now)
                current.append((prefix + period_id, end))
            windows = self.windows = (day, tuple(current))
        return windows[1]


def plan_request(policy: Policy, key: ApiKey, model: str, prompt_estimate: int, max_output: int,
                 now: float) -> Plan:
    templates: dict[tuple[str, str, str | None, str], _Template] | None = policy.memo.get(MEMO_KEY)
    if templates is None:
        templates = policy.memo[MEMO_KEY] = {}
    at = (key.id, key.meter_id, key.team_id, model)  # all a template depends on, with the policy
    template = templates.get(at)
    if template is None:
        template = _Template(policy, key, model)
        if len(templates) >= TEMPLATES:  # one event loop per process: nothing else runs meanwhile
            del templates[next(iter(templates))]
        templates[at] = template
    if template.has_tokens:
        reserve_tokens = prompt_estimate + max_output
        checks = [Check(_TOKENS, c.counter, c.limit, reserve_tokens, c.label) if c.kind is _TOKENS
                  else c for c in template.limits]
    else:
        checks = list(template.limits)
    max_cost = policy.max_cost(model, now, prompt_estimate, max_output)  # the prices in force now
    needs_usage = template.has_tokens
    if template.budgets:
        amount = max_cost or 0
        for (_, budget, label), (counter, end) in zip(template.budgets, template.windows_of(now),
                                                      strict=True):
            checks.append(Check(_BUDGET, counter, budget.limit, amount, label, 60.0, budget.hard,
                                None if end is None else end - now + BUDGET_MARGIN_S))
        needs_usage = needs_usage or max_cost is not None
    return Plan(tuple(checks), prompt_estimate, max_output, needs_usage)


def budget_checks(checks: list[Check], policy: Policy, key: ApiKey, amount: int, now: float) -> None:
    """Append a check per budget of the key's team and of the key, for the current periods."""
    for prefix, budget, label in _budgets_of(policy, key):
        period_id, end = period_window(budget.period, now)
        checks.append(Check(CheckKind.BUDGET, prefix + period_id, budget.limit, amount, label,
                            hard=budget.hard, ttl_s=None if end is None else end - now + BUDGET_MARGIN_S))


def _budgets_of(policy: Policy, key: ApiKey) -> tuple[tuple[str, Budget, str], ...]:
    """(counter name without the period, budget, label) of the key's team's budgets, then the key's."""
    found = []
    for scope, subject, meter in ((Scope.TEAM, key.team_id, key.team_id),
                                  (Scope.KEY, key.id, key.meter)):
        if subject is None:
            continue
        for budget in policy.budgets(scope, subject):
            found.append((f"bud:{scope.value}:{meter}:", budget,
                          f"{budget.period.value} budget of {policy.describe(scope, subject)}"))
    return tuple(found)


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
