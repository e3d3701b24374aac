"""Adapter residency (``routing.adapters``): single-flight loads, bounded loads, LRU slots that
never unload an adapter in use, repair from the engine's word, and the affinity strategy.

A fake loader stands in for the engine: it records every load and unload, can be held on an
event (a load in progress), made to fail, or never to answer (the time bound).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from inferenceops.errors import AdapterLoadFailed, AdapterSlotsBusy, UpstreamServerError
from inferenceops.platform import (
    Adapter,
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
from inferenceops.routing import LeastOutstanding, RouteFacts
from inferenceops.routing.adapters import AdapterAffinity, AdapterResidency

R0, R1 = Replica("d-0", "http://r0/v1"), Replica("d-1", "http://r1/v1")


def _deployment(max_loras: int = 2) -> Deployment:
    return Deployment("d", "openai", "base", (R0, R1), max_loras=max_loras)


def _adapter(name: str, deployment: Deployment | None = None) -> Adapter:
    model = Model("m", deployment or _deployment(), frozenset({Endpoint.CHAT}))
    return Adapter(name, model, f"/loras/{name}")


class FakeLoader:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []  # (action, replica, adapter)
        self.gate: asyncio.Event | None = None  # set: loads wait for it
        self.fail: set[str] = set()
        self.hang = False
        self.unloaded_while: list[int] = []  # in-flight count of each victim when unloaded
        self.residency: AdapterResidency | None = None

    async def load(self, deployment: Deployment, replica: Replica, name: str, source: str) -> None:
        self.calls.append(("load", replica.id, name))
        if self.hang:
            await asyncio.Event().wait()
        if self.gate is not None:
            await self.gate.wait()
        if name in self.fail:
            raise UpstreamServerError("engine failed", extra={"deployment": deployment.name})

    async def unload(self, deployment: Deployment, replica: Replica, name: str) -> None:
        self.calls.append(("unload", replica.id, name))


def _loads(loader: FakeLoader) -> list[tuple[str, str, str]]:
    return [c for c in loader.calls if c[0] == "load"]


async def test_concurrent_requests_for_one_adapter_load_it_once() -> None:
    loader = FakeLoader()
    loader.gate = asyncio.Event()
    residency = AdapterResidency(loader)
    d, a = _deployment(), _adapter("a")
    waiting = [asyncio.ensure_future(residency.acquire(d, R0, a)) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in waiting)  # all wait on the one load
    loader.gate.set()
    assert await asyncio.gather(*waiting) == [True] * 5
    assert _loads(loader) == [("load", "d-0", "a")]
    assert residency.in_flight("d-0", "a") == 5
    assert await residency.acquire(d, R0, a) is False  # resident: no load at all
    assert len(_loads(loader)) == 1


async def test_the_load_goes_on_when_the_request_that_started_it_leaves() -> None:
    loader = FakeLoader()
    loader.gate = asyncio.Event()
    residency = AdapterResidency(loader)
    d, a = _deployment(), _adapter("a")
    first = asyncio.ensure_future(residency.acquire(d, R0, a))
    second = asyncio.ensure_future(residency.acquire(d, R0, a))
    await asyncio.sleep(0.01)
    first.cancel()
    loader.gate.set()
    assert await second is True
    assert residency.resident("d-0") == ["a"] and residency.in_flight("d-0", "a") == 1


async def test_a_load_that_takes_too_long_fails_every_waiter_with_502() -> None:
    loader = FakeLoader()
    loader.hang = True
    residency = AdapterResidency(loader, load_timeout_s=0.05)
    d, a = _deployment(), _adapter("a")
    results = await asyncio.gather(residency.acquire(d, R0, a), residency.acquire(d, R0, a),
                                   return_exceptions=True)
    assert all(isinstance(r, AdapterLoadFailed) and r.status == 502 for r in results), results
    assert "within 0.05s" in str(results[0])
    assert residency.resident("d-0") == [] and residency.failures == {"d": 1}


async def test_a_refused_load_is_adapter_load_failed_and_the_next_request_tries_again() -> None:
    loader = FakeLoader()
    loader.fail = {"a"}
    residency = AdapterResidency(loader)
    d, a = _deployment(), _adapter("a")
    with pytest.raises(AdapterLoadFailed) as refused:
        await residency.acquire(d, R0, a)
    assert refused.value.code == "adapter_load_failed"
    loader.fail = set()
    assert await residency.acquire(d, R0, a) is True
    assert len(_loads(loader)) == 2


async def test_full_slots_unload_the_least_recently_used_idle_adapter() -> None:
    loader = FakeLoader()
    residency = AdapterResidency(loader)
    d = _deployment(max_loras=2)
    a, b, c = _adapter("a"), _adapter("b"), _adapter("c")
    for adapter in (a, b, a):  # a used last: b is the least recently used
        await residency.acquire(d, R0, adapter)
        residency.release("d-0", adapter.name)
    await residency.acquire(d, R0, c)
    assert ("unload", "d-0", "b") in loader.calls
    assert sorted(residency.resident("d-0")) == ["a", "c"]
    assert residency.unloads == {"d": 1}


async def test_an_adapter_with_requests_in_flight_is_never_unloaded() -> None:
    loader = FakeLoader()
    residency = AdapterResidency(loader)
    d = _deployment(max_loras=2)
    a, b, c = _adapter("a"), _adapter("b"), _adapter("c")
    await residency.acquire(d, R0, a)  # held
    await residency.acquire(d, R0, b)
    residency.release("d-0", "b")
    await residency.acquire(d, R0, c)  # b is idle: b goes, not a
    assert [x for x in loader.calls if x[0] == "unload"] == [("unload", "d-0", "b")]
    with pytest.raises(AdapterSlotsBusy) as busy:  # a and c both held now
        await residency.acquire(d, R0, b)
    assert busy.value.status == 503 and busy.value.headers["Retry-After"] == "1"
    assert sorted(residency.resident("d-0")) == ["a", "c"]


async def test_slots_count_loads_in_progress() -> None:
    loader = FakeLoader()
    loader.gate = asyncio.Event()
    residency = AdapterResidency(loader)
    d = _deployment(max_loras=1)
    first = asyncio.ensure_future(residency.acquire(d, R0, _adapter("a")))
    await asyncio.sleep(0.01)
    with pytest.raises(AdapterSlotsBusy):  # the one slot is taken by a's load
        await residency.acquire(d, R0, _adapter("b"))
    loader.gate.set()
    await first


async def test_what_the_engine_lost_is_forgotten_and_what_it_lists_is_adopted() -> None:
    residency = AdapterResidency(FakeLoader())
    d = _deployment(max_loras=2)
    await residency.acquire(d, R0, _adapter("a"))
    await residency.acquire(d, R0, _adapter("b"))
    residency.release("d-0", "b")
    residency.observed("d-0", set(), max_loras=2)  # restarted: lists nothing
    assert residency.resident("d-0") == ["a"]  # b dropped; a has a request in flight
    residency.forget("d-0", "a")  # its request got a 404
    assert residency.resident("d-0") == []
    residency.observed("d-1", {"x", "y", "z"}, max_loras=2)  # another process loaded these
    assert len(residency.resident("d-1")) == 2


def test_affinity_keeps_to_the_replicas_holding_the_adapter() -> None:
    residency = AdapterResidency(FakeLoader())
    residency.observed("d-1", {"a"}, max_loras=2)
    strategy = AdapterAffinity(LeastOutstanding(), residency)
    d = _deployment()
    for _ in range(4):
        assert strategy.pick(d, RouteFacts(adapter="a"), ()) is R1
    assert strategy.pick(d, RouteFacts(adapter="a"), ("d-1",)) is R0  # R1 tried: any other
    assert {strategy.pick(d, RouteFacts(adapter="b"), ()).id for _ in range(4)} == {"d-0", "d-1"}


class ResidencyMachine(RuleBasedStateMachine):
    """Any sequence of registrations, grants, requests (acquire, later release), engine losses
    and model-list reads.

    Invariants: a request reaches routing only for an adapter registered and granted to the
    caller's team (``Snapshot.visible``, as *authorize* asks); never more adapters on a replica
    than its slots; a request is only sent (``acquire`` returned) where its adapter is
    resident; an adapter is never unloaded while a request holds it; the record's in-flight
    counts are the requests still held.
    """

    NAMES = ("a", "b", "c", "e")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.loader = FakeLoader()
        self.residency = AdapterResidency(self.loader)
        self.deployment = _deployment(max_loras=2)
        self.held: Counter[tuple[str, str]] = Counter()
        self.registered: set[str] = set(self.NAMES)  # rules take them away and back
        self.granted: set[str] = set(self.NAMES)
        self.key = ApiKey("k", "sk-", Principal("u", "user"), "team", frozenset({"inference"}))
        original = self.loader.unload

        async def unload(deployment: Deployment, replica: Replica, name: str) -> None:
            assert self.held[replica.id, name] == 0, f"unloaded {name} with requests in flight"
            await original(deployment, replica, name)

        self.loader.unload = unload  # type: ignore[method-assign]

    @rule(name=st.sampled_from(NAMES), add=st.booleans())
    def register(self, name: str, add: bool) -> None:
        (self.registered.add if add else self.registered.discard)(name)

    @rule(name=st.sampled_from(NAMES), add=st.booleans())
    def grant(self, name: str, add: bool) -> None:
        (self.granted.add if add else self.granted.discard)(name)

    @rule(replica=st.sampled_from([R0, R1]), name=st.sampled_from(NAMES))
    def request(self, replica: Replica, name: str) -> None:
        model = Model("m", self.deployment, frozenset({Endpoint.CHAT}))
        catalog = Catalog([model], [Adapter(n, model, f"/loras/{n}") for n in self.registered])
        snapshot = Snapshot(catalog, Identity({}, {"team": sorted(self.granted)}))
        visible = snapshot.visible(self.key, name)
        if name not in self.registered or name not in self.granted:
            assert visible is None  # refused as if it did not exist: never routed
            return
        assert visible is not None and visible[1] is not None
        try:
            self.loop.run_until_complete(
                self.residency.acquire(self.deployment, replica, visible[1]))
        except AdapterSlotsBusy:
            assert all(self.residency.in_flight(replica.id, n) > 0
                       for n in self.residency.resident(replica.id))
            return
        assert name in self.residency.resident(replica.id)  # sent only where it is resident
        self.held[replica.id, name] += 1

    @precondition(lambda self: +self.held)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        replica_id, name = data.draw(st.sampled_from(sorted(+self.held)))
        self.held[replica_id, name] -= 1
        self.residency.release(replica_id, name)

    @rule(replica=st.sampled_from([R0, R1]), name=st.sampled_from(NAMES))
    def engine_lost_it(self, replica: Replica, name: str) -> None:
        self.residency.forget(replica.id, name)
        # Its requests in flight fail at the engine and end: what the forwarder then does.
        while self.held[replica.id, name]:
            self.held[replica.id, name] -= 1
            self.residency.release(replica.id, name)

    @rule(replica=st.sampled_from([R0, R1]), listed=st.sets(st.sampled_from(NAMES)))
    def model_list_read(self, replica: Replica, listed: set[str]) -> None:
        self.residency.observed(replica.id, listed, self.deployment.max_loras)

    @invariant()
    def within_slots_and_counts_agree(self) -> None:
        for replica in (R0, R1):
            resident = self.residency.resident(replica.id)
            assert len(resident) <= self.deployment.max_loras
            for name in self.NAMES:
                if self.held[replica.id, name]:
                    assert name in resident
                    assert self.residency.in_flight(replica.id, name) == self.held[replica.id, name]

    def teardown(self) -> None:
        self.loop.close()


TestResidencyMachine = ResidencyMachine.TestCase
TestResidencyMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
