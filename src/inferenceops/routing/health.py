"""What this process knows of each replica's health, and the eligible-replica choice it implies.

Per replica id (one process's view; each gateway process keeps its own — see
docs/health.md): a circuit breaker (``routing.breaker``), counts of what went
wrong, and the progress of its in-flight streams. Written by the forwarder
(each attempt's outcome), the readiness prober (``routing.prober``) and nothing
else; read on the hot path by ``pick`` and by /metrics and the admin API.

``pick`` wraps a deployment's routing strategy: replicas that are drained
(``Deployment.drained``, from the catalog), whose breaker is OPEN, or HALF_OPEN
with its one trial already in flight are handed to the strategy as already
*tried*, so strategies stay simple and affinity keys of a missing replica pass
to its ring neighbour. A replica in slow start is taken with a probability equal
to its weight (unless it is the only one left). ``None`` means no replica may
take the request now: the forwarder answers 503.

**Hung replicas.** A stream's head and every chunk are progress. A replica with
streams in flight whose last progress is older than ``hung_after_s`` — every
one of its streams stalled — is suspected hung and its breaker opens
(``check_hung``, called by the prober every round). Non-streamed requests show
no progress until they end, so they do not count.

No I/O; the clock and the random source are injected for tests.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from inferenceops.platform import Deployment, Replica
from inferenceops.routing.breaker import Breaker, BreakerPolicy, State
from inferenceops.routing.protocol import RouteFacts, Strategy

#: Failure kinds, as labelled on ``inferenceops_replica_failures_total``.
CONNECT, SERVER_ERROR, TIMEOUT, INVALID, BROKEN, HUNG, PROBE = (
    "connect", "server_error", "timeout", "invalid_response", "broken_stream", "hung", "probe")
#: Retry-After for a deployment whose replicas are all drained (an operator's decision).
DRAINED_RETRY_AFTER_S = 10


@dataclass(slots=True)
class ReplicaHealth:
    breaker: Breaker
    streams: int = 0  # streams in flight (head received, not ended)
    last_progress: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)  # kind → count, for /metrics
    busy: int = 0  # 429s seen
    last_failure: str | None = None
    probe_ok: bool | None = None  # the last readiness probe (None: never probed)


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """One replica's health at one instant, for the admin API."""

    replica: str
    state: str
    weight: float
    drained: bool
    consecutive_failures: int
    open_reason: str | None
    retry_in_s: float
    streams_in_flight: int
    last_failure: str | None
    last_probe_ok: bool | None
    failures: dict[str, int]


class FleetHealth:
    """Every replica's breaker and progress in this process (see the module docstring)."""

    __slots__ = ("policy", "hung_after_s", "_clock", "_random", "_replicas", "_watch")

    def __init__(self, policy: BreakerPolicy | None = None, *, hung_after_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self.hung_after_s = hung_after_s
        self._clock = clock
        self._random = rng or random.Random()
        self._replicas: dict[str, ReplicaHealth] = {}
        #: Replicas whose breaker is not plainly CLOSED at full weight: the hot path's fast
        #: check is that this is empty.
        self._watch: set[str] = set()

    def _of(self, replica_id: str) -> ReplicaHealth:
        health = self._replicas.get(replica_id)
        if health is None:
            health = self._replicas[replica_id] = ReplicaHealth(Breaker(self.policy))
        return health

    # ---- choosing a replica (the hot path) ----------------------------------------------------

    def pick(self, strategy: Strategy, deployment: Deployment, facts: RouteFacts,
             tried: Collection[str]) -> tuple[Replica, bool] | None:
        """An eligible replica not in ``tried`` and whether it is a HALF_OPEN trial; or None."""
        replicas = deployment.replicas
        n = len(replicas)
        if not self._watch and not deployment.drained:
            if len(tried) >= n:
                return None
            replica = strategy.pick(deployment, facts, tried)
            return None if replica.id in tried else (replica, False)
        now = self._clock()
        excluded = set(tried) | deployment.drained
        for replica in replicas:
            if replica.id in self._watch and not self._replicas[replica.id].breaker.admits(now):
                excluded.add(replica.id)
        while sum(1 for r in replicas if r.id not in excluded):
            replica = strategy.pick(deployment, facts, excluded)
            if replica.id in excluded:
                return None
            taken = self._take(replica.id, now, last=sum(1 for r in replicas
                                                          if r.id not in excluded) == 1)
            if taken is not None:
                return replica, taken
            excluded.add(replica.id)
        return None

    def _take(self, replica_id: str, now: float, *, last: bool) -> bool | None:
        """True: the trial; False: a plain request; None: not this one (slow start said no)."""
        if replica_id not in self._watch:
            return False
        breaker = self._replicas[replica_id].breaker
        if breaker.state(now) is State.CLOSED:
            weight = breaker.weight(now)
            if weight >= 1.0:
                self._settle(replica_id, breaker, now)
                return False
            return False if last or self._random.random() < weight else None
        return True if breaker.begin(now) else None

    def retry_after(self, deployment: Deployment) -> int:
        """Whole seconds until some replica of ``deployment`` may take a request again (>= 1)."""
        now = self._clock()
        waits = [self._of(r.id).breaker.retry_in(now) for r in deployment.replicas
                 if r.id not in deployment.drained]
        if not waits:
            return DRAINED_RETRY_AFTER_S
        return max(1, math.ceil(min(waits)))

    # ---- outcomes (the forwarder) -------------------------------------------------------------

    def succeeded(self, replica_id: str) -> None:
        if replica_id in self._watch:
            self._event(replica_id, lambda b, now: b.succeeded(now))

    def busy(self, replica_id: str) -> None:
        self._of(replica_id).busy += 1
        if replica_id in self._watch:
            self._event(replica_id, lambda b, now: b.busy(now))

    def failed(self, replica_id: str, kind: str) -> None:
        health = self._of(replica_id)
        health.failures[kind] = health.failures.get(kind, 0) + 1
        health.last_failure = kind
        self._event(replica_id, lambda b, now: b.failed(now, kind))

    def abandoned(self, replica_id: str) -> None:
        """A HALF_OPEN trial ended with no verdict."""
        self._of(replica_id).breaker.abandon()

    def stream_started(self, replica_id: str) -> None:
        health = self._of(replica_id)
        health.streams += 1
        health.last_progress = self._clock()

    def progress(self, replica_id: str) -> None:
        health = self._replicas.get(replica_id)
        if health is not None:
            health.last_progress = self._clock()

    def stream_ended(self, replica_id: str) -> None:
        health = self._replicas.get(replica_id)
        if health is not None and health.streams > 0:
            health.streams -= 1

    # ---- the prober ---------------------------------------------------------------------------

    def probed(self, replica_id: str, ok: bool, reason: str = PROBE) -> None:
        health = self._of(replica_id)
        health.probe_ok = ok
        if ok:
            if replica_id in self._watch:
                self._event(replica_id, lambda b, now: b.probe_ok(now))
            return
        health.failures[PROBE] = health.failures.get(PROBE, 0) + 1
        health.last_failure = f"{PROBE}: {reason}"
        self._event(replica_id, lambda b, now: b.probe_failed(now, f"{PROBE}: {reason}"))

    def check_hung(self) -> list[str]:
        """Open the breaker of every replica whose streams all stalled; their ids."""
        now = self._clock()
        hung = []
        for replica_id, health in self._replicas.items():
            if health.streams and now - health.last_progress > self.hung_after_s \
                    and health.breaker.state(now) is not State.OPEN:
                health.failures[HUNG] = health.failures.get(HUNG, 0) + 1
                health.last_failure = HUNG
                self._event(replica_id, lambda b, at: b.suspect(at, HUNG))
                hung.append(replica_id)
        return hung

    def forget(self, keep: Collection[str]) -> None:
        """Drop replicas that left the catalog (and have nothing in flight)."""
        for replica_id in [r for r, h in self._replicas.items() if r not in keep and not h.streams]:
            del self._replicas[replica_id]
            self._watch.discard(replica_id)

    # ---- reading ------------------------------------------------------------------------------

    def view(self, deployment: Deployment) -> list[ReplicaView]:
        now = self._clock()
        views = []
        for replica in deployment.replicas:
            health = self._of(replica.id)
            breaker = health.breaker
            state = breaker.state(now)
            views.append(ReplicaView(
                replica.id, state.name.lower(), round(breaker.weight(now), 3),
                replica.id in deployment.drained, breaker.failures,
                breaker.reason if state is not State.CLOSED else None,
                round(breaker.retry_in(now), 3), health.streams, health.last_failure,
                health.probe_ok, dict(health.failures)))
        return views

    def state(self, replica_id: str) -> State:
        return self._of(replica_id).breaker.state(self._clock())

    def render(self, deployments: Iterable[Deployment]) -> str:
        """Prometheus text: breaker state, weight, drained, failures and opens per replica."""
        now = self._clock()
        lines = [
            "# HELP inferenceops_replica_breaker_state Circuit breaker per replica in this "
            "process: 0 closed, 1 open, 2 half-open.",
            "# TYPE inferenceops_replica_breaker_state gauge"]
        weights = ["# HELP inferenceops_replica_weight Share of new work a replica gets "
                   "(slow start ramps 0.1 to 1; 0 while open or drained).",
                   "# TYPE inferenceops_replica_weight gauge"]
        drained = ["# HELP inferenceops_replica_drained 1 if an operator drained the replica.",
                   "# TYPE inferenceops_replica_drained gauge"]
        opens = ["# HELP inferenceops_replica_breaker_opens_total Times the breaker opened.",
                 "# TYPE inferenceops_replica_breaker_opens_total counter"]
        failures = ["# HELP inferenceops_replica_failures_total Failures seen per replica "
                    "and kind (connect, server_error, timeout, invalid_response, broken_stream, "
                    "hung, probe).",
                    "# TYPE inferenceops_replica_failures_total counter"]
        busy = ["# HELP inferenceops_replica_busy_total 429 answers (busy, not a failure).",
                "# TYPE inferenceops_replica_busy_total counter"]
        for deployment in deployments:
            for replica in deployment.replicas:
                health = self._of(replica.id)
                labels = f'deployment="{label_value(deployment.name)}",replica="{label_value(replica.id)}"'
                is_drained = replica.id in deployment.drained
                lines.append(f"inferenceops_replica_breaker_state{{{labels}}} "
                             f"{int(health.breaker.state(now))}")
                weight = 0.0 if is_drained else health.breaker.weight(now)
                weights.append(f"inferenceops_replica_weight{{{labels}}} {weight:g}")
                drained.append(f"inferenceops_replica_drained{{{labels}}} {int(is_drained)}")
                opens.append(f"inferenceops_replica_breaker_opens_total{{{labels}}} "
                             f"{health.breaker.opens}")
                busy.append(f"inferenceops_replica_busy_total{{{labels}}} {health.busy}")
                for kind, count in sorted(health.failures.items()):
                    failures.append(f'inferenceops_replica_failures_total{{{labels},'
                                    f'kind="{kind}"}} {count}')
        return "\n".join([*lines, *weights, *drained, *opens, *failures, *busy]) + "\n"

    # ---- internals ----------------------------------------------------------------------------

    def _event(self, replica_id: str, apply: Callable[[Breaker, float], None]) -> None:
        breaker = self._of(replica_id).breaker
        now = self._clock()
        apply(breaker, now)
        if breaker.state(now) is State.CLOSED and breaker.failures == 0 \
                and breaker.weight(now) >= 1.0:
            self._watch.discard(replica_id)
        else:
            self._watch.add(replica_id)

    def _settle(self, replica_id: str, breaker: Breaker, now: float) -> None:
        if breaker.failures == 0:
            self._watch.discard(replica_id)


def label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
