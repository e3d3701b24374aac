"""The forwarder's retry rules and what each attempt tells the replicas' health.

A scripted fake client stands in for the engines: each replica answers from
its own script (an answer, or one of the typed errors the engine adapter
raises). Every assertion is on what was sent where, what the caller got and
the breakers' states — never on timing (backoffs are capped to nothing).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

import orjson
import pytest
from tests.support.clock import Clock

from inferenceops.engines.openai_compat import UpstreamAnswer
from inferenceops.errors import (
    InferenceOpsError,
    NoReplicaAvailable,
    UpstreamClientError,
    UpstreamConnectFailed,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.forward import Forwarder
from inferenceops.pipeline.request import parse_inference
from inferenceops.pipeline.sink import CollectingSink
from inferenceops.platform import Deployment, Endpoint, Replica
from inferenceops.routing import RouteFacts, default_router
from inferenceops.routing.breaker import BreakerPolicy, State
from inferenceops.routing.health import FleetHealth
from inferenceops.routing.retry import RetryPolicy

BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
OK = UpstreamAnswer(200, b"application/json", b'{"usage":{"prompt_tokens":1,"completion_tokens":1}}',
                    {"usage": {"prompt_tokens": 1, "completion_tokens": 1}})
Step = UpstreamAnswer | InferenceOpsError


class ScriptedClient:
    """Each replica answers the next step of its script; the last step repeats."""

    def __init__(self, scripts: dict[str, Sequence[Step]]) -> None:
        self.scripts = {rid: list(steps) for rid, steps in scripts.items()}
        self.sent: dict[str, int] = defaultdict(int)
        self.order: list[str] = []

    async def complete(self, deployment: Deployment, replica: Replica, endpoint: str,
                       body: bytes, *, idempotent: bool = False) -> UpstreamAnswer:
        self.sent[replica.id] += 1
        self.order.append(replica.id)
        script = self.scripts[replica.id]
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, InferenceOpsError):
            raise step
        return step


def refused() -> UpstreamConnectFailed:
    return UpstreamConnectFailed("deployment 'd' is unreachable (connection refused)")


def busy(retry_after: str = "0") -> UpstreamRateLimited:
    return UpstreamRateLimited("slow down", status=429, headers={"Retry-After": retry_after})


def deployment(n: int, drained: frozenset[str] = frozenset()) -> Deployment:
    return Deployment("d", "openai", "m", tuple(Replica(f"d-{i}", f"http://r{i}/v1")
                                                for i in range(n)),
                      routing="round_robin", drained=drained)


def forwarder(client: ScriptedClient, clock: Clock, *, budget: int = 2) -> Forwarder:
    health = FleetHealth(BreakerPolicy(failures_to_open=3, open_s=5.0, slow_start_s=0.0),
                         clock=clock, rng=random.Random(1))
    return Forwarder(client, default_router(), health=health,  # type: ignore[arg-type]
                     retry=RetryPolicy(budget=budget, base_s=0.0, max_wait_s=0.0),
                     rng=random.Random(1))


async def send(fw: Forwarder, d: Deployment) -> tuple[RequestFacts, CollectingSink]:
    facts = RequestFacts.for_call(Endpoint.CHAT, BODY, api_key="sk-x")
    request = parse_inference(BODY, Endpoint.CHAT, 4096)
    sink = CollectingSink()
    await fw.forward(facts, d, Endpoint.CHAT, request, RouteFacts(), sink)
    return facts, sink


async def test_a_refused_connection_moves_to_another_replica_at_once() -> None:
    client = ScriptedClient({"d-0": [refused()], "d-1": [OK]})
    fw = forwarder(client, Clock())
    facts, sink = await send(fw, deployment(2))
    assert sink.status == 200 and dict(client.sent) == {"d-0": 1, "d-1": 1}
    assert facts.outcome.replica == "d-1" and facts.outcome.reached_engine


async def test_every_replica_refusing_is_503_naming_the_model_with_retry_after() -> None:
    client = ScriptedClient({"d-0": [refused()], "d-1": [refused()]})
    fw = forwarder(client, Clock())
    with pytest.raises(NoReplicaAvailable) as info:
        await send(fw, deployment(2))
    assert info.value.status == 503 and "'m'" in info.value.message
    assert int(info.value.headers["Retry-After"]) >= 1
    assert dict(client.sent) == {"d-0": 1, "d-1": 1}  # each tried once, no more


async def test_the_breaker_opens_and_the_dead_replica_is_not_tried_again() -> None:
    clock = Clock()
    client = ScriptedClient({"d-0": [refused()], "d-1": [OK]})
    fw = forwarder(client, clock)
    for _ in range(10):
        _, sink = await send(fw, deployment(2))
        assert sink.status == 200
    assert client.sent["d-0"] == 3  # the breaker opened after three refusals
    assert fw.health.state("d-0") is State.OPEN
    clock.now += 5.0  # open_s: one trial, which succeeds now
    client.scripts["d-0"] = [OK]
    for _ in range(4):
        await send(fw, deployment(2))
    assert client.sent["d-0"] >= 4 and fw.health.state("d-0") is State.CLOSED


async def test_all_breakers_open_is_503_without_sending_anything() -> None:
    client = ScriptedClient({"d-0": [refused()]})
    fw = forwarder(client, Clock())
    for _ in range(3):
        with pytest.raises(NoReplicaAvailable):
            await send(fw, deployment(1))
    sent = client.sent["d-0"]
    with pytest.raises(NoReplicaAvailable) as info:
        await send(fw, deployment(1))
    assert client.sent["d-0"] == sent  # answered at once, nothing sent
    assert info.value.headers["Retry-After"] == "5"


@pytest.mark.parametrize("failure", [
    UpstreamServerError("engine failed"), UpstreamTimeout("no first byte"),
    UpstreamUnavailable("the engine closed the connection"),
])
async def test_nothing_that_may_have_reached_an_engine_is_sent_again(
        failure: InferenceOpsError) -> None:
    client = ScriptedClient({"d-0": [failure], "d-1": [failure]})
    fw = forwarder(client, Clock())
    with pytest.raises(type(failure)):
        await send(fw, deployment(2))
    assert sum(client.sent.values()) == 1


async def test_a_429_is_retried_within_the_budget_and_never_trips_the_breaker() -> None:
    client = ScriptedClient({"d-0": [busy()]})
    fw = forwarder(client, Clock(), budget=2)
    for _ in range(5):
        with pytest.raises(UpstreamRateLimited):
            await send(fw, deployment(1))
    assert client.sent["d-0"] == 5 * 3  # one try and two re-sends each time
    assert fw.health.state("d-0") is State.CLOSED


async def test_a_429_goes_to_another_replica_which_answers() -> None:
    client = ScriptedClient({"d-0": [busy()], "d-1": [OK]})
    fw = forwarder(client, Clock())
    _, sink = await send(fw, deployment(2))
    assert sink.status == 200 and client.order == ["d-0", "d-1"]


async def test_a_long_retry_after_is_the_callers_to_wait() -> None:
    client = ScriptedClient({"d-0": [busy("30")]})
    fw = forwarder(client, Clock())
    with pytest.raises(UpstreamRateLimited):
        await send(fw, deployment(1))
    assert client.sent["d-0"] == 1


async def test_an_engine_503_is_retried_and_then_succeeds() -> None:
    client = ScriptedClient({"d-0": [UpstreamOverloaded("loading"), OK]})
    fw = forwarder(client, Clock())
    _, sink = await send(fw, deployment(1))
    assert sink.status == 200 and client.sent["d-0"] == 2
    assert fw.retries == {("d", "overloaded"): 1}


async def test_a_4xx_is_the_callers_and_counts_as_the_engine_alive() -> None:
    client = ScriptedClient({"d-0": [UpstreamClientError("bad", status=400)]})
    fw = forwarder(client, Clock())
    for _ in range(5):
        with pytest.raises(UpstreamClientError):
            await send(fw, deployment(1))
    assert client.sent["d-0"] == 5 and fw.health.state("d-0") is State.CLOSED


async def test_a_drained_replica_takes_no_new_work() -> None:
    client = ScriptedClient({"d-0": [OK], "d-1": [OK]})
    fw = forwarder(client, Clock())
    for _ in range(6):
        await send(fw, deployment(2, drained=frozenset({"d-0"})))
    assert dict(client.sent) == {"d-1": 6}
    with pytest.raises(NoReplicaAvailable) as info:
        await send(fw, deployment(2, drained=frozenset({"d-0", "d-1"})))
    assert "drained" in info.value.message


async def test_the_metrics_show_breakers_and_retries() -> None:
    client = ScriptedClient({"d-0": [refused()], "d-1": [OK]})
    fw = forwarder(client, Clock())
    for _ in range(4):
        await send(fw, deployment(2))
    text = fw.render_metrics([deployment(2)])
    assert 'inferenceops_replica_breaker_state{deployment="d",replica="d-0"} 1' in text
    assert 'inferenceops_replica_breaker_state{deployment="d",replica="d-1"} 0' in text
    assert 'inferenceops_replica_failures_total{deployment="d",replica="d-0",kind="connect"} 3' \
        in text
    assert 'inferenceops_upstream_retries_total{deployment="d",reason="connect"} 3' in text
