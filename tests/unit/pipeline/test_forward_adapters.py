"""The forwarder with a LoRA adapter (``pipeline.forward``, ``routing.adapters``): the body
names the adapter as the engine knows it (no rewrite), the adapter is held while the request
runs, an engine's 404 reloads it and resends — once, never twice — and a failed load is the
caller's 502 without anything sent. A scripted client stands in for the engines."""

from __future__ import annotations

import random

import orjson
import pytest
from tests.unit.pipeline.test_forward_retry import OK, ScriptedClient
from tests.unit.routing.test_adapters import FakeLoader

from inferenceops.errors import AdapterLoadFailed, AdapterSlotsBusy, UpstreamClientError
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.forward import Forwarder
from inferenceops.pipeline.request import parse_inference
from inferenceops.pipeline.sink import CollectingSink
from inferenceops.platform import Adapter, Deployment, Endpoint, Model, Replica
from inferenceops.routing import RouteFacts, default_router
from inferenceops.routing.adapters import AdapterResidency
from inferenceops.routing.retry import RetryPolicy

BODY = orjson.dumps({"model": "tone", "messages": [{"role": "user", "content": "hi"}]})
DEPLOYMENT = Deployment("d", "openai", "base", (Replica("d-0", "http://r0/v1"),
                                                Replica("d-1", "http://r1/v1")), max_loras=2)
ADAPTER = Adapter("tone", Model("m", DEPLOYMENT, frozenset({Endpoint.CHAT})), "/loras/tone")
ONE = Deployment("d", "openai", "base", (Replica("d-0", "http://r0/v1"),), max_loras=2)


class BodyClient(ScriptedClient):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.bodies: list[bytes] = []
        self.held: list[int] = []  # the adapter's in-flight count on the replica, at each send
        self.residency: AdapterResidency | None = None

    async def complete(self, deployment: Deployment, replica: Replica, endpoint: str,
                       body: bytes, *, idempotent: bool = False):  # type: ignore[no-untyped-def]
        self.bodies.append(body)
        assert self.residency is not None
        self.held.append(self.residency.in_flight(replica.id, "tone"))
        return await super().complete(deployment, replica, endpoint, body, idempotent=idempotent)


def setup(scripts: dict[str, list[object]]) -> tuple[Forwarder, BodyClient, FakeLoader]:
    client = BodyClient(scripts)
    loader = FakeLoader()
    residency = AdapterResidency(loader)
    client.residency = residency
    fw = Forwarder(client, default_router(), retry=RetryPolicy(base_s=0.0, max_wait_s=0.0),  # type: ignore[arg-type]
                   rng=random.Random(1), adapters=residency)
    return fw, client, loader


async def send(fw: Forwarder, deployment: Deployment = DEPLOYMENT,
               ) -> tuple[RequestFacts, CollectingSink]:
    facts = RequestFacts.for_call(Endpoint.CHAT, BODY, api_key="sk-x")
    facts.adapter = ADAPTER
    sink = CollectingSink()
    await fw.forward(facts, deployment, Endpoint.CHAT, parse_inference(BODY, Endpoint.CHAT, 4096),
                     RouteFacts(adapter="tone"), sink)
    return facts, sink


def gone() -> UpstreamClientError:
    return UpstreamClientError("The model `tone` does not exist.", status=404)


async def test_loaded_once_sent_as_written_held_while_running_and_routed_back() -> None:
    fw, client, loader = setup({"d-0": [OK], "d-1": [OK]})
    replicas = set()
    for _ in range(4):
        facts, sink = await send(fw)
        assert sink.status == 200
        replicas.add(facts.outcome.replica)
    assert len(replicas) == 1  # back to where it was loaded
    assert [c[0] for c in loader.calls] == ["load"]
    assert client.bodies == [BODY] * 4  # the bytes as the caller sent them
    assert client.held == [1, 1, 1, 1]  # held while it runs, released after
    assert fw.adapters.in_flight(replicas.pop(), "tone") == 0


async def test_an_engine_that_lost_the_adapter_gets_it_again_and_the_request_once_more() -> None:
    fw, client, loader = setup({"d-0": [gone(), OK]})
    _, sink = await send(fw, ONE)
    assert sink.status == 200
    assert [c[0] for c in loader.calls] == ["load", "load"] and len(client.bodies) == 2


async def test_a_second_404_is_the_callers_answer_not_a_loop() -> None:
    fw, client, loader = setup({"d-0": [gone()]})
    with pytest.raises(UpstreamClientError) as refused:
        await send(fw, ONE)
    assert refused.value.status == 404
    assert len(client.bodies) == 2 and len([c for c in loader.calls if c[0] == "load"]) == 2


async def test_a_failed_load_sends_nothing() -> None:
    fw, client, loader = setup({"d-0": [OK], "d-1": [OK]})
    loader.fail = {"tone"}
    with pytest.raises(AdapterLoadFailed) as failed:
        await send(fw)
    assert failed.value.status == 502 and failed.value.extra["request_id"]
    assert client.bodies == []


async def test_a_replica_whose_slots_all_serve_requests_is_passed_over() -> None:
    fw, client, loader = setup({"d-0": [OK], "d-1": [OK]})
    small = Deployment("d", "openai", "base", DEPLOYMENT.replicas, max_loras=1)
    other = Adapter("other", ADAPTER.model, "/loras/other")
    await fw.adapters.acquire(small, small.replicas[0], other)  # d-0's one slot, held
    for _ in range(3):
        facts, sink = await send(fw, small)
        assert sink.status == 200 and facts.outcome.replica == "d-1"
    await fw.adapters.acquire(small, small.replicas[1], other)  # now d-1's is held too
    fw.adapters.forget("d-1", "tone")
    with pytest.raises(AdapterSlotsBusy) as busy:
        await send(fw, small)
    assert busy.value.status == 503 and busy.value.headers["Retry-After"] == "1"
