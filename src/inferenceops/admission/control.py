"""Admission control: the pipeline's *admit* stage, and the settlement of what it reserved.

``admit`` (1) plans the counters the request must fit in, (2) checks and
reserves all of them in one atomic ledger step, (3) waits for a slot on the
deployment in its fair queue when the deployment is at capacity, and returns
what it decided (``Admission``: the ticket, the rate-limit headers, the time
spent queued) — it writes nothing onto the request. A request refused at (2)
or (3) holds nothing afterwards. ``finish`` — called by the pipeline's settle
stage, whatever way the request ended — gives the slot back and settles the
reservations to the tokens and cost settle worked out, or releases them when
the request never reached an engine. Pricing is settle's (``metering``), not
admission's.

A soft budget going over its limit is reported once per counter and process,
as an audit record on the outbox. A ledger that cannot be reached is a policy
decision (``fail_open``): closed (the default) refuses with 503; open lets the
request through unmetered. Either way it is counted and logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inferenceops.admission.fair_queue import DeploymentGate, QueueRejected
from inferenceops.admission.headers import rate_limit_headers, retry_after_header
from inferenceops.admission.ledger import (
    Admitted,
    Check,
    CheckKind,
    CounterState,
    Ledger,
    LedgerUnavailable,
)
from inferenceops.admission.metrics import AdmissionMetrics
from inferenceops.admission.plan import BUDGET_MARGIN_S, Plan, estimate_prompt_tokens, plan_request
from inferenceops.errors import BudgetExceeded, InvalidRequest, QueueFull, RateLimited, Unavailable
from inferenceops.outbox import AuditRecord, Outbox
from inferenceops.platform.policy import from_nanos
from inferenceops.platform.priority import Priority
from inferenceops.values import fresh_id

if TYPE_CHECKING:
    from inferenceops.platform import ApiKey, Deployment, Model, Snapshot

log = logging.getLogger("inferenceops.admission")
_LEASE_MARGIN_S = 60.0


@dataclass(slots=True)
class Ticket:
    """What one admitted request holds until ``finish``."""

    request_id: str
    plan: Plan
    gate: DeploymentGate | None
    metered: bool  # the ledger holds reservations for it


@dataclass(slots=True)
class Admission:
    """What admission decided for one request.

    The counters' states after the reservation are kept as they were; their ``x-ratelimit-*``
    headers are written out only when the answer asks for them (``headers``): formatting
    them is no reason to keep the engine waiting for the request.
    """

    ticket: Ticket
    states: tuple[CounterState, ...]  # parallel to ``ticket.plan.checks`` (empty: unmetered)
    queued_s: float = 0.0  # waited for engine capacity: not gateway overhead
    _headers: list[tuple[bytes, bytes]] | None = None

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """x-ratelimit-* (and x-inferenceops-queue-ms) for the answer, formatted once."""
        headers = self._headers
        if headers is None:
            headers = self._headers = (rate_limit_headers(self.ticket.plan.checks, self.states)
                                       if self.states else None) or []
            if self.queued_s > 0.0:
                headers.append((b"x-inferenceops-queue-ms", b"%.1f" % (self.queued_s * 1000.0)))
        return headers


class AdmissionControl:
    __slots__ = ("_ledger", "_fail_open", "_gates", "metrics", "_outbox", "_alerted")

    def __init__(self, ledger: Ledger, *, fail_open: bool = False,
                 outbox: Outbox | None = None) -> None:
        self._ledger = ledger
        self._fail_open = fail_open
        self._gates: dict[str, DeploymentGate] = {}
        self.metrics = AdmissionMetrics()
        self._outbox = outbox  # where soft-budget alerts go (None: logged only)
        self._alerted: set[str] = set()

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    def render_metrics(self) -> str:
        return self.metrics.render(self._gates)

    def gate(self, deployment: str) -> DeploymentGate | None:
        """The deployment's gate, if it has one: read by the batch dispatcher (its load)."""
        return self._gates.get(deployment)

    async def admit(self, snapshot: Snapshot, key: ApiKey, model: Model, body_size: int,
                    max_tokens: int | None, priority: Priority, *,
                    prompt_tokens: Callable[[], int] | None = None,
                    deployment: Deployment | None = None) -> Admission | None:
        """Reserve everything the request needs, or raise the error that says what refused it.

        None: nothing applies to this request (no limits, budgets or capacity).
        ``prompt_tokens`` counts the prompt (``metering.tokens``), asked only when something
        applies; without it, the prompt is estimated from ``body_size``.
        """
        deployment = deployment or model.deployment  # the one the model's split chose
        policy = snapshot.policy
        gate = self._gate(deployment)
        if policy.empty and gate is None:
            return None
        prompt = prompt_tokens() if prompt_tokens is not None else estimate_prompt_tokens(body_size)
        plan = plan_request(policy, key, model.name, prompt, max_tokens or model.max_output_tokens,
                            time.time())
        request_id = fresh_id(9)
        states: tuple[CounterState, ...] | None = None
        if plan.checks:
            # Leases outlive any legitimate request (queue wait + total timeout): they expire
            # only when a settle was lost. A gateway that died holding them is found by its
            # missing heartbeat much sooner (instance.py).
            lease_s = (deployment.timeouts.total_s + _LEASE_MARGIN_S + max(
                deployment.queue.interactive_max_wait_s, deployment.queue.background_max_wait_s))
            states = await self._reserve(request_id, plan, key, lease_s)
        admission = Admission(Ticket(request_id, plan, None, states is not None), states or ())
        if gate is not None:
            try:
                waited = await gate.acquire(key.team_id or key.id, policy.weight(key.team_id),
                                            priority)
            except QueueRejected as exc:
                await self._undo(admission.ticket)
                code = "queue_timeout" if exc.reason == "wait_exceeded" else "queue_full"
                self.metrics.refused(code)
                raise QueueFull(exc.message, code=code,
                                headers=retry_after_header(exc.retry_after_s),
                                extra={"limit": "deployment_capacity",
                                       "retry_after_s": round(exc.retry_after_s, 3)}) from None
            except BaseException:  # cancelled while waiting (client left): hold nothing
                await self._undo(admission.ticket)
                raise
            admission.ticket.gate = gate
            if waited > 0.0:
                admission.queued_s = waited
        self.metrics.admitted += 1
        return admission

    async def finish(self, ticket: Ticket, *, reached_engine: bool, tokens: int, cost: int) -> None:
        """Give back the slot, then settle the reservations to ``tokens`` and ``cost`` — or
        release them when the request never reached an engine. Never raises."""
        if ticket.gate is not None:
            ticket.gate.release()
            ticket.gate = None
        if not ticket.metered:
            return
        ticket.metered = False
        try:
            if not reached_engine:
                await self._ledger.release(ticket.request_id, ticket.plan.checks)
            else:
                await self._ledger.settle(ticket.request_id, ticket.plan.checks, tokens, cost)
        except LedgerUnavailable as exc:
            self.metrics.ledger_errors += 1
            log.error("could not settle request %s: %s (its reservations expire with their lease)",
                      ticket.request_id, exc)

    async def _undo(self, ticket: Ticket) -> None:
        if ticket.metered:
            ticket.metered = False
            try:
                await self._ledger.release(ticket.request_id, ticket.plan.checks)
            except LedgerUnavailable as exc:
                self.metrics.ledger_errors += 1
                log.error("could not release request %s: %s", ticket.request_id, exc)

    async def _reserve(self, request_id: str, plan: Plan, key: ApiKey,
                       lease_s: float) -> tuple[CounterState, ...] | None:
        """The counters' states once the request is reserved in them; None when it could not
        be metered and the policy lets it through unmetered (``fail_open``)."""
        checks = plan.checks
        try:
            outcome = await self._ledger.admit(request_id, checks, lease_s)
        except LedgerUnavailable as exc:
            self.metrics.ledger_errors += 1
            if self._fail_open:
                self.metrics.fail_open += 1
                log.warning("admission ledger unavailable, admitting unmetered (fail open): %s", exc)
                return None
            log.error("admission ledger unavailable, refusing (fail closed): %s", exc)
            raise Unavailable("Admission control is unavailable; try again shortly.",
                              code="admission_unavailable", headers={"Retry-After": "1"}) from None
        if isinstance(outcome, Admitted):
            for index in outcome.over_soft:
                self._soft_overrun(checks[index], key)
            return outcome.states
        check = checks[outcome.index]
        self.metrics.refused(check.kind.value)
        raise _refusal(check, outcome.retry_after_s, outcome.state.used)

    def _soft_overrun(self, check: Check, key: ApiKey) -> None:
        self.metrics.soft_budget_overruns += 1
        if check.counter in self._alerted:
            return
        self._alerted.add(check.counter)
        log.warning("soft budget exceeded: %s (limit %s)", check.label, from_nanos(check.limit))
        if self._outbox is not None:
            self._outbox.put(AuditRecord(
                actor="system:admission", action="budget.soft_exceeded", target_type="budget",
                target_id=check.counter, after={"budget": check.label, "limit_nanos": check.limit,
                                                "team_id": key.team_id, "key_id": key.id}))

    def _gate(self, deployment: Deployment) -> DeploymentGate | None:
        gate = self._gates.get(deployment.name)
        if deployment.capacity is None:
            return gate if gate is not None and gate.in_flight else None  # draining an old cap
        queue = deployment.queue
        if gate is None:
            gate = self._gates[deployment.name] = DeploymentGate(
                deployment.name, deployment.capacity, max_queue=queue.max_waiting,
                max_wait_s={Priority.INTERACTIVE: queue.interactive_max_wait_s,
                            Priority.BACKGROUND: queue.background_max_wait_s})
        elif gate.capacity != deployment.capacity:
            gate.set_capacity(deployment.capacity)
        return gate


def _refusal(check: Check, retry_after_s: float | None, used: int) -> Exception:
    """The client error for a failed check: 429 when waiting helps, 400 when it never will."""
    extra = {"limit": check.label, "limit_value": check.limit}
    if check.kind is CheckKind.BUDGET:
        limit_text = from_nanos(check.limit)
        if check.amount > check.limit:
            return InvalidRequest(
                f"This request may cost up to {from_nanos(check.amount)}, more than the whole "
                f"{check.label} ({limit_text}); lower max_tokens.", code="exceeds_budget",
                param="max_tokens", extra=extra)
        if retry_after_s is None and check.ttl_s is not None:  # the period's end
            retry_after_s = max(1.0, check.ttl_s - BUDGET_MARGIN_S)
        when = (f" It resets in {retry_after_s:.0f} s." if retry_after_s is not None else "")
        return BudgetExceeded(
            f"The {check.label} ({limit_text}) has {from_nanos(max(0, check.limit - used))} left; "
            f"this request may cost up to {from_nanos(check.amount)}.{when}",
            headers=retry_after_header(retry_after_s), extra={**extra, "retry_after_s": retry_after_s})
    if retry_after_s is None:
        param = "max_tokens" if check.kind is CheckKind.TOKENS else None
        return InvalidRequest(
            f"This request needs {check.amount} of the {check.label} limit of {check.limit}; it can "
            "never fit" + ("; lower max_tokens." if param else "."),
            code="exceeds_limit", param=param, extra=extra)
    return RateLimited(
        f"Rate limit reached for {check.label}: limit {check.limit}, used {used}, requested "
        f"{check.amount}. Try again in {retry_after_s:.2f} s.",
        headers=retry_after_header(retry_after_s),
        extra={**extra, "retry_after_s": round(retry_after_s, 3)})

