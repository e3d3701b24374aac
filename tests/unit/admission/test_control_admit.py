"""``AdmissionControl.admit`` on its own: the prompt count it reserves for, and what a wait says.

Pinned here (mutmut found them loose, ``make mutation``): the prompt is counted
by the caller's counter when one is given (``metering.tokens``) and estimated
from the body size otherwise, and is not counted at all when nothing applies;
a request that waited for a slot says how long in ``x-inferenceops-queue-ms``;
a full queue's refusal gives the retry hint in seconds to the millisecond. The
waits run on a clock the test moves (the gate's time is the loop's).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from tests.support.manual_clock import advance, run_on_manual_clock, turns

from inferenceops.admission import control as control_module
from inferenceops.admission.control import AdmissionControl
from inferenceops.admission.memory_ledger import MemoryLedger
from inferenceops.admission.plan import estimate_prompt_tokens
from inferenceops.errors import QueueFull
from inferenceops.platform import (
    ApiKey,
    Catalog,
    Deployment,
    Endpoint,
    Identity,
    Model,
    Principal,
    Replica,
    Snapshot,
)
from inferenceops.platform.policy import (
    Budget,
    BudgetRule,
    LimitRule,
    Period,
    Policy,
    Price,
    RateLimit,
    Scope,
)
from inferenceops.platform.priority import Priority

HI = Priority.INTERACTIVE
KEY = ApiKey("key_a", "sk-io-a", Principal("usr_1"), "team_a", frozenset({"inference"}))
UNCAPPED = Deployment("dep", "openai", "served", (Replica("r", "http://127.0.0.1:1/v1"),))
MODEL = Model("m", UNCAPPED, frozenset({Endpoint.CHAT}))
BUDGET = Policy(budgets=[BudgetRule(Scope.TEAM, "team_a", Budget(10**12, Period.MONTHLY))],
                prices={"m": Price.per_token(input=1, output=1)})


def snapshot(model: Model, policy: Policy) -> Snapshot:
    return Snapshot(Catalog([model]), Identity([], {"team_a": ["m"]}), policy)


def capped(max_waiting: int = 1000) -> Model:
    deployment = replace(UNCAPPED, capacity=1, queue=replace(UNCAPPED.queue, max_waiting=max_waiting))
    return replace(MODEL, deployment=deployment)


def test_prompts_are_estimated_at_one_token_per_three_bytes_and_one_more() -> None:
    assert [estimate_prompt_tokens(size) for size in (0, 2, 3, 4, 7, 300)] == [1, 1, 2, 2, 3, 101]
    assert type(estimate_prompt_tokens(4)) is int


async def test_the_prompt_is_counted_by_the_given_counter_and_only_when_something_applies() -> None:
    control = AdmissionControl(MemoryLedger())
    asked: list[int] = []

    def count() -> int:
        asked.append(7)
        return 7

    counted = await control.admit(snapshot(MODEL, BUDGET), KEY, MODEL, 300, 10, HI, prompt_tokens=count)
    assert counted is not None and counted.ticket.plan.prompt_estimate == 7 and asked == [7]
    estimated = await control.admit(snapshot(MODEL, BUDGET), KEY, MODEL, 300, 10, HI)
    assert estimated is not None and estimated.ticket.plan.prompt_estimate == 101
    for admission in (counted, estimated):
        await control.finish(admission.ticket, reached_engine=False, tokens=0, cost=0)
    # No limit, no budget, no capacity: nothing to count for.
    assert await control.admit(snapshot(MODEL, Policy()), KEY, MODEL, 300, 10, HI,
                               prompt_tokens=count) is None
    assert asked == [7]


def test_a_request_that_waited_for_a_slot_says_how_long_in_milliseconds() -> None:
    async def main() -> None:
        control = AdmissionControl(MemoryLedger())
        model = capped()
        snap = snapshot(model, Policy())
        first = await control.admit(snap, KEY, model, 30, 10, HI)
        assert first is not None and first.queued_s == 0.0
        assert [name for name, _ in first.headers] == []
        second = asyncio.ensure_future(control.admit(snap, KEY, model, 30, 10, HI))
        await advance(1.25)
        await control.finish(first.ticket, reached_engine=True, tokens=0, cost=0)
        waited = await second
        assert waited is not None and waited.queued_s == 1.25
        assert waited.headers == [(b"x-inferenceops-queue-ms", b"1250.0")]
        await control.finish(waited.ticket, reached_engine=True, tokens=0, cost=0)

    run_on_manual_clock(main)


def test_a_full_queue_hints_the_retry_in_seconds_to_the_millisecond() -> None:
    async def main() -> None:
        control = AdmissionControl(MemoryLedger())
        model = capped(max_waiting=2)
        snap = snapshot(model, Policy())

        async def admit() -> object:
            return await control.admit(snap, KEY, model, 30, 10, HI)

        holder = await control.admit(snap, KEY, model, 30, 10, HI)
        assert holder is not None
        queued = [asyncio.ensure_future(control.admit(snap, KEY, model, 30, 10, HI)) for _ in range(2)]
        await advance(0.5)
        await control.finish(holder.ticket, reached_engine=True, tokens=0, cost=0)
        second = await queued[0]
        assert second is not None
        await advance(0.0411234)  # completions 41.1234 ms apart: the service pace
        await control.finish(second.ticket, reached_engine=True, tokens=0, cost=0)
        third = await queued[1]
        assert third is not None
        waiting = [asyncio.ensure_future(admit()) for _ in range(2)]
        await turns()
        try:
            await control.admit(snap, KEY, model, 30, 10, HI)
            raise AssertionError("a full queue admitted a request")
        except QueueFull as error:
            # Two ahead of it, and itself: 3 × 41.1234 ms = 0.1233702 s.
            assert error.extra == {"limit": "deployment_capacity", "retry_after_s": 0.123}
            assert error.message.endswith("queue is full (2 waiting); retry in 0.1 s")
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await control.finish(third.ticket, reached_engine=True, tokens=0, cost=0)

    run_on_manual_clock(main)


async def test_the_rate_limit_headers_are_written_when_first_asked_for_and_only_once(
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Admission keeps the counters' states; their x-ratelimit-* headers are formatted when the
    answer asks for them (not while the engine waits for the request), once."""
    formatted: list[int] = []
    real = control_module.rate_limit_headers

    def counting(checks, states):  # type: ignore[no-untyped-def]
        formatted.append(len(checks))
        return real(checks, states)

    monkeypatch.setattr(control_module, "rate_limit_headers", counting)
    policy = Policy(limits=[LimitRule(Scope.TEAM, "team_a", RateLimit(rpm=10, tpm=1000))])
    admission = await AdmissionControl(MemoryLedger()).admit(snapshot(MODEL, policy), KEY, MODEL,
                                                             30, 10, HI)
    assert admission is not None and formatted == []
    assert len(admission.states) == len(admission.ticket.plan.checks) == 2
    names = [name for name, _ in admission.headers]
    assert names == [b"x-ratelimit-limit-requests", b"x-ratelimit-remaining-requests",
                     b"x-ratelimit-reset-requests", b"x-ratelimit-limit-tokens",
                     b"x-ratelimit-remaining-tokens", b"x-ratelimit-reset-tokens"]
    assert dict(admission.headers)[b"x-ratelimit-remaining-requests"] == b"9"
    assert admission.headers is admission.headers and formatted == [2]
