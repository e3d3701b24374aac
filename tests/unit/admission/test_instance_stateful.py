"""Random lives of several gateway instances sharing one Redis ledger (hypothesis, stateful).

Rules: start an instance, admit (a concurrency slot and a budget reservation) from a
live instance, settle or release any open request (also one of a dead instance: a
partition's late finish), finish a request again, kill an instance (its heartbeat key
goes, as its TTL would make it), bring a dead one back (a partition that healed: the
same id beats again), heartbeat. After every step a watcher instance reads the
counters, which also runs the liveness check (``check_s=0``: on every call), and
asserts against the model:

* held slots = the open admissions not yet freed (finished, or freed with their
  instance's death) — every one of them made by an instance that was live since;
* reserved budget = the sum of those admissions' amounts; spent = the sum of the
  costs of every first settle, late ones included;
* neither is ever negative nor over its limit, and every admission is decided exactly
  as the model says (so a freed slot is really free and nothing is freed twice).

Real Redis (skipped when none answers); TTLs are long, so no lease and no heartbeat
lapses by time: only the rules change anything.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis import Redis
from redis.exceptions import RedisError

from inferenceops.admission.instance import Liveness
from inferenceops.admission.ledger import Admitted, Check, CheckKind, Refused
from inferenceops.admission.redis_ledger import RedisLedger

REDIS_URL = os.environ.get("INFERENCEOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SLOTS, BUDGET = 3, 100
LIVENESS = Liveness(interval_s=30.0, ttl_s=60.0, check_s=0)
LEASE = 600.0
T = TypeVar("T")


def checks(amount: int) -> list[Check]:
    return [Check(CheckKind.CONCURRENCY, "con:team:t1", SLOTS, 1, "concurrency of team t1"),
            Check(CheckKind.BUDGET, "bud:team:t1:2026-12", BUDGET, amount, "budget of team t1",
                  ttl_s=3600.0)]


class Instances(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.prefix = f"test-instances-{uuid.uuid4().hex[:12]}"
        self.watcher = self.ledger()
        self.ledgers: list[RedisLedger] = []
        self.live: list[bool] = []
        self.open: dict[str, tuple[int, int]] = {}  # request id -> (instance, amount)
        self.held: set[str] = set()  # open requests whose slot and reservation still count
        self.closed: list[tuple[str, int, int]] = []
        self.spent = 0
        self.made = 0

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)

    def ledger(self) -> RedisLedger:
        return RedisLedger(REDIS_URL, prefix=self.prefix, liveness=LIVENESS, timeout_s=5.0)

    @initialize()
    def first_instance(self) -> None:
        self.start_instance()

    @precondition(lambda self: len(self.ledgers) < 4)
    @rule()
    def start_instance(self) -> None:  # also what a restarted process is: a new id
        ledger = self.ledger()
        ledger.supervise()
        self.run(ledger.beat())
        self.ledgers.append(ledger)
        self.live.append(True)

    @precondition(lambda self: any(self.live))
    @rule(data=st.data(), amount=st.integers(0, 60))
    def admit(self, data: st.DataObject, amount: int) -> None:
        index = data.draw(st.sampled_from([i for i, alive in enumerate(self.live) if alive]))
        request_id = f"q{self.made}"
        self.made += 1
        result = self.run(self.ledgers[index].admit(request_id, checks(amount), LEASE))
        reserved = sum(self.open[r][1] for r in self.held)
        if len(self.held) + 1 > SLOTS:
            assert isinstance(result, Refused) and result.index == 0, result
        elif self.spent + reserved + amount > BUDGET:
            assert isinstance(result, Refused) and result.index == 1, result
        else:
            assert isinstance(result, Admitted), result
            self.open[request_id] = (index, amount)
            self.held.add(request_id)

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data(), settle=st.booleans())
    def finish(self, data: st.DataObject, settle: bool) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.open)))
        index, amount = self.open.pop(request_id)
        ledger, cost = self.ledgers[index], data.draw(st.integers(0, amount))
        if settle:
            self.run(ledger.settle(request_id, checks(amount), tokens=1, cost=cost))
            self.spent += cost  # also when its instance died meanwhile: the cost is real
        else:
            self.run(ledger.release(request_id, checks(amount)))
        self.held.discard(request_id)
        self.closed.append((request_id, index, amount))

    @precondition(lambda self: bool(self.closed))
    @rule(data=st.data())
    def finish_again(self, data: st.DataObject) -> None:
        request_id, index, amount = data.draw(st.sampled_from(self.closed))
        self.run(self.ledgers[index].settle(request_id, checks(amount), tokens=1, cost=amount))
        self.run(self.ledgers[index].release(request_id, checks(amount)))

    @precondition(lambda self: any(self.live))
    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        index = data.draw(st.sampled_from([i for i, alive in enumerate(self.live) if alive]))
        with Redis.from_url(REDIS_URL) as client:
            client.delete("{" + self.prefix + "}:i:" + self.ledgers[index].instance_id)
        self.live[index] = False
        self.held -= {r for r in self.held if self.open[r][0] == index}

    @precondition(lambda self: not all(self.live))
    @rule(data=st.data())
    def rejoin(self, data: st.DataObject) -> None:
        index = data.draw(st.sampled_from([i for i, alive in enumerate(self.live) if not alive]))
        self.run(self.ledgers[index].beat())
        self.live[index] = True  # what was freed while it was gone stays freed

    @precondition(lambda self: any(self.live))
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        index = data.draw(st.sampled_from([i for i, alive in enumerate(self.live) if alive]))
        self.run(self.ledgers[index].beat())

    @invariant()
    def held_is_what_live_instances_still_hold(self) -> None:
        used = self.run(self.watcher.read(checks(0)))[0].used
        spent, reserved = self.run(self.watcher.budget_totals("bud:team:t1:2026-12"))
        assert used == len(self.held) and 0 <= used <= SLOTS
        assert reserved == sum(self.open[r][1] for r in self.held) and 0 <= reserved <= BUDGET
        assert spent == self.spent

    def teardown(self) -> None:
        async def close() -> None:
            for ledger in (self.watcher, *self.ledgers):
                await ledger.close()

        try:
            self.run(close())
        finally:
            self.runner.close()
            with Redis.from_url(REDIS_URL) as client:
                keys = list(client.scan_iter(match="{" + self.prefix + "}:*", count=1000))
                if keys:
                    client.delete(*keys)


def test_held_amounts_always_equal_what_live_instances_hold_never_negative_never_over() -> None:
    try:
        with Redis.from_url(REDIS_URL, socket_connect_timeout=1) as client:
            client.ping()
    except (RedisError, OSError) as error:
        pytest.skip(f"no Redis server answers at {REDIS_URL} ({type(error).__name__}: {error})")
    run_state_machine_as_test(Instances, settings=settings(
        max_examples=40, stateful_step_count=30, deadline=None))
