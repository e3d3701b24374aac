"""Admission's accounting through the real handler, where mutmut found it unguarded.

Same world as ``test_critical_lines`` (the real gateway app in-process, admission
on, a fake engine over real HTTP, the books read back through ``/v1/quota``);
each test pins lines of ``admission/control.py`` that mutants changed without
any test noticing (``make mutation``, ``bench/results/mutation-latest.md``):

* what a request is charged when the engine reported no usage, or the stream was
  cut before its first token, or the model has no price;
* the lease admission asks the ledger for;
* the turn a request queues under: its team (every key of a team shares it), or
  the key itself when it has no team, weighted by the team's weight;
* the queue wait, told in ``x-inferenceops-queue-ms`` and kept out of
  ``x-inferenceops-overhead-ms``;
* a ledger that fails while settling or releasing: the answer is unaffected, the
  failure is counted on ``/metrics`` and logged with the admission's request id;
* a ledger that fails at admission: 503 with ``Retry-After`` (fail closed) or
  admitted unmetered (fail open), each failure counted;
* a soft budget gone over: counted at every admission, reported once (log and audit);
* a deployment's capacity changing while requests run.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson
import pytest
from tests.support.asgi import request
from tests.unit.conftest import Harness
from tests.unit.gateway.test_critical_lines import (
    OPS_KEY,
    OTHER_KEY,
    SOLO_KEY,
    SOLO_KEY_2,
    TEAM_KEY,
    UNIT,
    Books,
    Held,
    answered,
    books,
    chat,
    ledger,
    make_gateway,
    queue,
    until,
    upstream,
)

from inferenceops.admission.ledger import Admitted, Check, LedgerUnavailable, Refused
from inferenceops.admission.memory_ledger import MemoryLedger
from inferenceops.metering.tokens import TokenCounter, prompt_tokens
from inferenceops.outbox import AuditRecord
from inferenceops.platform import Catalog, Snapshot
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

__all__ = ["ledger", "make_gateway", "upstream"]  # fixtures shared with test_critical_lines

CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.fixture(autouse=True, scope="module")
def _tokenizer_loaded() -> None:
    """Prompts are counted with the platform's tokenizer once it is loaded; load it first, so
    every count below is the tokenizer's (not the byte estimate of a worker still loading)."""
    TokenCounter().load()


def estimate(doc: dict[str, Any]) -> int:
    """The prompt tokens admission reserves for this body, and settlement charges when no
    engine reported usage (``metering.tokens``)."""
    return prompt_tokens(doc, "messages", TokenCounter(), size=len(orjson.dumps(doc)))


class SpyLedger(MemoryLedger):
    """A memory ledger that records the leases asked for, and fails the calls named in ``failing``."""

    def __init__(self, failing: Sequence[str] = ()) -> None:
        super().__init__()
        self.leases: list[float] = []
        self.failing = set(failing)

    def _maybe_fail(self, name: str) -> None:
        if name in self.failing:
            raise LedgerUnavailable(f"{name}: connection refused")

    async def admit(self, request_id: str, checks: Sequence[Check], lease_s: float
                    ) -> Admitted | Refused:
        self.leases.append(lease_s)
        self._maybe_fail("admit")
        return await super().admit(request_id, checks, lease_s)

    async def settle(self, request_id: str, checks: Sequence[Check], tokens: int, cost: int) -> None:
        self._maybe_fail("settle")
        await super().settle(request_id, checks, tokens, cost)

    async def release(self, request_id: str, checks: Sequence[Check]) -> None:
        self._maybe_fail("release")
        await super().release(request_id, checks)


async def metric(h: Harness, name: str) -> str:
    text = (await request(h.app, "GET", "/metrics")).body.decode()
    (line,) = (line for line in text.splitlines() if line.startswith(name + " "))
    return line.split(" ", 1)[1]


# -- what a request is charged -------------------------------------------------------------------

async def test_an_answer_without_usage_is_charged_its_prompt_estimate_and_the_full_max_output(
        make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    h = await make_gateway(ledger)
    doc = {**CHAT, "model": "no-usage-model", "max_tokens": 7}
    assert (await chat(h, doc)).status == 200
    prompt = estimate(doc)
    assert await books(h) == answered(1, tokens_each=prompt + 7,
                                      cost_each=prompt * UNIT + 7 * 10 * UNIT)


async def test_a_stream_cut_before_its_first_token_is_charged_its_prompt_estimate_only(
        make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    h = await make_gateway(ledger)
    doc = {**CHAT, "model": "empty-cut-model", "stream": True}
    resp = await chat(h, doc)
    assert resp.status == 200 and b'"error"' in resp.body  # told in-band: the status was sent
    prompt = estimate(doc)
    assert await books(h) == answered(1, tokens_each=prompt, cost_each=prompt * UNIT)


async def test_an_unpriced_model_under_a_budget_spends_nothing_and_settles_its_tokens(
        make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(limits=[LimitRule(Scope.TEAM, "team_ml", RateLimit(rpm=100, tpm=10**6,
                                                                       concurrency=10))],
                    budgets=[BudgetRule(Scope.TEAM, "team_ml", Budget(10**12, Period.DAILY))])
    h = await make_gateway(ledger, policy=policy)
    for stream in (False, True):
        assert (await chat(h, {**CHAT, "stream": stream})).status == 200
    # Both settled to the engine's count (3 + 1, then 3 + 5 streamed), nothing spent.
    assert await books(h) == Books(requests=2, tokens=4 + 8, slots=0, spent="0", reserved="0")


# -- what admission asks of the ledger -----------------------------------------------------------

async def test_the_lease_outlives_the_total_timeout_and_the_longest_queue_wait(
        make_gateway) -> None:  # type: ignore[no-untyped-def]
    spy = SpyLedger()
    h = await make_gateway(spy, chat_extra=(
        "    capacity: 4\n    queue: {interactive_max_wait_s: 50, background_max_wait_s: 40}"))
    assert (await chat(h)).status == 200
    assert spy.leases == [30.0 + 60.0 + 50.0]  # total_s + a minute + the longest wait


# -- whose turn a queued request takes -----------------------------------------------------------

async def grant_order(h: Harness, arrivals: list[tuple[str, str]]) -> list[str]:
    """Hold the one slot, queue ``arrivals`` (label, key) in order, free it: who was served when."""
    holder = Held(h, key=OPS_KEY)
    await holder.started()
    tasks = []
    for n, (label, secret) in enumerate(arrivals, start=1):
        doc = {**CHAT, "messages": [{"role": "user", "content": label}]}
        tasks.append(asyncio.ensure_future(chat(h, doc, key=secret)))

        async def queued(n: int = n) -> bool:
            return await queue(h) == (1, n)

        await until(queued, f"{label} to queue")
    assert await holder.let_go() == 200
    assert [(await task).status for task in tasks] == [200] * len(arrivals)
    return [orjson.loads(seen.body)["messages"][0]["content"] for seen in h.fake.requests[1:]]


ONE_SLOT = "    capacity: 1\n    queue: {max_waiting: 20}"


async def test_every_key_of_a_team_shares_the_teams_turn_in_the_queue(make_gateway) -> None:  # type: ignore[no-untyped-def]
    h = await make_gateway(MemoryLedger(), chat_extra=ONE_SLOT)
    order = await grant_order(h, [("ml-1", TEAM_KEY), ("ml-2", OTHER_KEY), ("ops", OPS_KEY)])
    assert order == ["ml-1", "ops", "ml-2"]


async def test_a_key_without_a_team_takes_its_own_turn(make_gateway) -> None:  # type: ignore[no-untyped-def]
    h = await make_gateway(MemoryLedger(), chat_extra=ONE_SLOT)
    order = await grant_order(h, [("solo-1", SOLO_KEY), ("solo-1'", SOLO_KEY), ("solo-2", SOLO_KEY_2)])
    assert order == ["solo-1", "solo-2", "solo-1'"]


@pytest.mark.parametrize(("weights", "ml_first_four"), [({}, 2), ({"team_ml": 3}, 3)])
async def test_a_teams_weight_is_its_share_of_the_turns(
        make_gateway, weights: dict[str, int], ml_first_four: int) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(team_weights=weights)
    h = await make_gateway(MemoryLedger(), policy=policy, chat_extra=ONE_SLOT)
    arrivals = [(f"ml-{i}", TEAM_KEY) for i in range(4)] + [(f"ops-{i}", OPS_KEY) for i in range(4)]
    order = await grant_order(h, arrivals)
    assert [label.split("-")[0] for label in order[:4]].count("ml") == ml_first_four


# -- the queue wait is told, and is not gateway overhead ------------------------------------------

async def test_the_queue_wait_is_told_and_kept_out_of_the_overhead(make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    h = await make_gateway(ledger, chat_extra=ONE_SLOT)
    direct = await chat(h)
    assert "x-inferenceops-queue-ms" not in direct.headers  # it did not wait
    assert direct.headers["x-ratelimit-limit-requests"] == "10000"
    holder = Held(h)
    await holder.started()
    waiting = asyncio.ensure_future(chat(h))

    async def queued() -> bool:
        return await queue(h) == (1, 1)

    await until(queued, "the request to queue")
    await asyncio.sleep(0.2)  # it waits at least this long
    assert await holder.let_go() == 200
    resp = await waiting
    assert resp.status == 200
    waited_ms = float(resp.headers["x-inferenceops-queue-ms"])
    assert waited_ms >= 200.0
    assert float(resp.headers["x-inferenceops-overhead-ms"]) < waited_ms
    assert resp.headers["x-ratelimit-limit-requests"] == "10000"  # rate-limit headers kept too


# -- a ledger that fails after admission ---------------------------------------------------------

REQUEST_ID = "[0-9a-f]{18}"


async def test_a_failed_settlement_leaves_the_answer_alone_and_is_counted_and_logged(
        make_gateway, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    h = await make_gateway(SpyLedger(failing=["settle", "release"]))
    caplog.set_level(logging.ERROR, "inferenceops.admission")
    assert (await chat(h)).status == 200
    assert (await chat(h, {**CHAT, "model": "dead-model"})).status == 503  # a release, failing
    assert await metric(h, "inferenceops_admission_ledger_errors_total") == "2"
    messages = [r.getMessage() for r in caplog.records if r.name == "inferenceops.admission"]
    assert len(messages) == 2
    for message, call in zip(messages, ("settle", "release"), strict=True):
        assert re.fullmatch(f"could not settle request {REQUEST_ID}: {call}: connection refused "
                            r"\(its reservations expire with their lease\)", message), message


async def test_a_failed_release_after_a_queue_refusal_is_counted_and_logged(
        make_gateway, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    h = await make_gateway(SpyLedger(failing=["release"]),
                           chat_extra="    capacity: 1\n    queue: {max_waiting: 0}")
    holder = Held(h)
    await holder.started()
    caplog.set_level(logging.ERROR, "inferenceops.admission")
    for _ in range(2):
        refused = await chat(h)
        assert refused.status == 429 and refused.json()["error"]["code"] == "queue_full"
    assert await holder.let_go() == 200
    assert await metric(h, "inferenceops_admission_ledger_errors_total") == "2"
    assert await metric(h, 'inferenceops_admission_refused_total{reason="queue_full"}') == "2"
    messages = [r.getMessage() for r in caplog.records if r.name == "inferenceops.admission"]
    assert len(messages) == 2 and len(set(messages)) == 2  # each names its own request
    for message in messages:
        assert re.fullmatch(f"could not release request {REQUEST_ID}: release: connection refused",
                            message), message


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
async def test_a_ledger_unreachable_at_admission_is_a_503_or_admits_unmetered(
        make_gateway, fail_open: bool, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    h = await make_gateway(SpyLedger(failing=["admit"]), fail_open=fail_open)
    caplog.set_level(logging.WARNING, "inferenceops.admission")
    for _ in range(2):
        resp = await chat(h)
        if fail_open:
            assert resp.status == 200
        else:
            assert resp.status == 503
            error = resp.json()["error"]
            assert error["code"] == "admission_unavailable"
            assert error["message"] == "Admission control is unavailable; try again shortly."
            assert resp.headers["retry-after"] == "1"
    assert await metric(h, "inferenceops_admission_ledger_errors_total") == "2"
    assert await metric(h, "inferenceops_admission_fail_open_total") == ("2" if fail_open else "0")
    said = ("admission ledger unavailable, admitting unmetered (fail open): admit: connection "
            "refused" if fail_open else
            "admission ledger unavailable, refusing (fail closed): admit: connection refused")
    records = [r for r in caplog.records if r.name == "inferenceops.admission"]
    assert [(r.levelno, r.getMessage()) for r in records] == \
        [(logging.WARNING if fail_open else logging.ERROR, said)] * 2


# -- a soft budget: admits past its limit, counted every time, reported once ----------------------

async def test_a_soft_budget_overrun_is_counted_every_time_and_reported_once(
        make_gateway, ledger, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(budgets=[BudgetRule(Scope.TEAM, "team_ml", Budget(1, Period.DAILY, hard=False))],
                    prices={"chat-model": Price.per_token(input=UNIT, output=UNIT)},
                    team_names={"team_ml": "ml"})
    h = await make_gateway(ledger, policy=policy)
    caplog.set_level(logging.WARNING, "inferenceops.admission")
    assert [(await chat(h)).status for _ in range(3)] == [200, 200, 200]
    assert await metric(h, "inferenceops_budget_soft_overruns_total") == "3"
    records, _ = h.app.state.outbox.take(1000)
    (alert,) = (r for r in records if isinstance(r, AuditRecord))
    _, _, period = alert.target_id.rpartition(":")
    assert (alert.actor, alert.action, alert.target_type, alert.target_id) == (
        "system:admission", "budget.soft_exceeded", "budget", f"bud:team:team_ml:{period}")
    assert period.startswith("d") and alert.after == {
        "budget": "daily budget of team 'ml'", "limit_nanos": 1, "team_id": "team_ml",
        "key_id": "key_team"}
    assert [r.getMessage() for r in caplog.records if r.name == "inferenceops.admission"] == [
        "soft budget exceeded: daily budget of team 'ml' (limit 0.000000001)"]


# -- refusals are counted by what refused them ---------------------------------------------------

async def test_refusals_are_counted_by_what_refused_them(make_gateway, ledger) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(limits=[LimitRule(Scope.TEAM, "team_ml", RateLimit(rpm=2, tpm=1000))])
    h = await make_gateway(ledger, policy=policy)
    assert (await chat(h, {**CHAT, "max_tokens": 2000})).status == 400  # can never fit
    assert [(await chat(h)).status for _ in range(4)] == [200, 200, 429, 429]
    assert await metric(h, "inferenceops_admission_admitted_total") == "2"
    assert await metric(h, 'inferenceops_admission_refused_total{reason="tokens"}') == "1"
    assert await metric(h, 'inferenceops_admission_refused_total{reason="requests"}') == "2"


# -- a deployment's capacity changing under running requests -------------------------------------

def with_capacity(h: Harness, capacity: int | None) -> None:
    """Swap in a snapshot where the chat deployment has ``capacity`` (as a catalog change does)."""
    snapshot = h.app.state.snapshot
    models = [replace(m, deployment=replace(m.deployment, capacity=capacity))
              if m.deployment.name == "fake" else m for m in snapshot.catalog.models]
    h.app.state.snapshot = Snapshot(Catalog(models), snapshot.identity, snapshot.policy)


async def test_a_larger_capacity_takes_effect_at_once(make_gateway) -> None:  # type: ignore[no-untyped-def]
    h = await make_gateway(MemoryLedger(), chat_extra="    capacity: 1\n    queue: {max_waiting: 0}")
    holder = Held(h)
    await holder.started()
    assert (await chat(h)).status == 429  # one slot, nobody may wait
    with_capacity(h, 2)
    second = Held(h)
    await second.started()  # admitted next to the first
    assert await queue(h) == (2, 0)
    assert [await holder.let_go(), await second.let_go()] == [200, 200]


async def test_a_removed_capacity_lets_what_runs_drain_first(make_gateway) -> None:  # type: ignore[no-untyped-def]
    h = await make_gateway(MemoryLedger(), policy=Policy(), chat_extra=ONE_SLOT)
    holder = Held(h)
    await holder.started()
    with_capacity(h, None)
    later = asyncio.ensure_future(chat(h))

    async def queued() -> bool:
        return await queue(h) == (1, 1)

    await until(queued, "the request to wait for the old capacity to drain")
    assert await holder.let_go() == 200
    assert (await later).status == 200
    assert await queue(h) == (0, 0)
    # Drained: the gate is gone, so requests are no longer held to one at a time.
    first, second = Held(h), Held(h)
    await first.started()
    await second.started()
    assert [await first.let_go(), await second.let_go()] == [200, 200]

