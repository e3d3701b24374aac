"""What this process knows of each replica's load: its own in-flight count and the last scrape.

The engine-aware strategies read it on the hot path; the scraper service
(``routing.scraper``) writes the scrapes; ``acquire``/``release`` of the
strategies keep the in-flight counts. Reads are dict look-ups and one clock
read: no I/O, no waiting.

A replica's **load** — what ``engine_load`` compares and what the stale
fallback returns — is, in "requests":

* with a fresh scrape (younger than ``stale_after_s``)::

      running + waiting_weight·waiting + kv_weight·kv_usage + sent since the scrape

  the engine's own view (which includes other gateway processes' requests),
  plus what this process has sent since the scrape was taken (the scrape
  cannot show those yet; without them every request of a burst would go to the
  replica that looked idle a second ago). A queued request weighs more than a
  running one (it has not even started its prefill), and a nearly full KV cache
  adds up to ``kv_weight`` (the engine will soon queue or preempt);
* with no scrape, or a stale one (the engine stopped answering ``/metrics``,
  the scraper is behind): **this process's in-flight count**, as
  ``least_outstanding`` uses — never a frozen picture of the past.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inferenceops.routing.engine_metrics import EngineLoad
from inferenceops.routing.health import label_value

if TYPE_CHECKING:
    from inferenceops.platform.catalog import Deployment

#: The strategies that count their requests on the board (the others keep their own counts).
BOARD_STRATEGIES = frozenset({"engine_load", "prefix_affinity", "session_affinity"})
#: How much a queued request weighs against a running one.
WAITING_WEIGHT = 2.0
#: What a full KV cache adds to a replica's load (in requests).
KV_WEIGHT = 4.0


@dataclass(slots=True)
class _Scrape:
    load: EngineLoad
    at: float  # monotonic seconds
    sent_since: int = 0


class EngineBoard:
    """Per replica id: this process's in-flight requests and the last engine scrape."""

    __slots__ = ("_inflight", "_urgent", "_scrapes", "stale_after_s", "_clock")

    def __init__(self, *, stale_after_s: float = 3.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._inflight: dict[str, int] = {}
        self._urgent: dict[str, int] = {}  # of those, interactive ones (``protocol.urgent``)
        self._scrapes: dict[str, _Scrape] = {}
        self.stale_after_s = stale_after_s
        self._clock = clock

    # ---- the hot path -------------------------------------------------------------------------

    def acquire(self, replica_id: str, *, urgent: bool = False) -> None:
        self._inflight[replica_id] = self._inflight.get(replica_id, 0) + 1
        if urgent:
            self._urgent[replica_id] = self._urgent.get(replica_id, 0) + 1
        scrape = self._scrapes.get(replica_id)
        if scrape is not None:
            scrape.sent_since += 1

    def release(self, replica_id: str, *, urgent: bool = False) -> None:
        left = self._inflight.get(replica_id, 0) - 1
        self._inflight[replica_id] = max(left, 0)
        if urgent:
            self._urgent[replica_id] = max(self._urgent.get(replica_id, 0) - 1, 0)

    def in_flight(self, replica_id: str) -> int:
        """Requests this process has on ``replica_id`` now."""
        return self._inflight.get(replica_id, 0)

    def urgent_in_flight(self, replica_id: str) -> int:
        """Interactive requests this process has on ``replica_id`` now."""
        return self._urgent.get(replica_id, 0)

    def fresh(self, replica_id: str) -> EngineLoad | None:
        """The last scrape of ``replica_id`` if it is not stale, else None."""
        scrape = self._scrapes.get(replica_id)
        if scrape is None or self._clock() - scrape.at > self.stale_after_s:
            return None
        return scrape.load

    def load(self, replica_id: str) -> float:
        """The replica's load (see the module docstring): engine-reported when fresh."""
        scrape = self._scrapes.get(replica_id)
        if scrape is None or self._clock() - scrape.at > self.stale_after_s:
            return float(self._inflight.get(replica_id, 0))
        engine = scrape.load
        return (engine.running + WAITING_WEIGHT * engine.waiting + KV_WEIGHT * engine.kv_usage
                + scrape.sent_since)

    # ---- the scraper --------------------------------------------------------------------------

    def record(self, replica_id: str, load: EngineLoad, at: float | None = None) -> None:
        """A scrape of ``replica_id`` taken at ``at`` (monotonic; default now)."""
        self._scrapes[replica_id] = _Scrape(load, self._clock() if at is None else at)

    def forget(self, keep: set[str]) -> None:
        """Drop what is known of replicas not in ``keep`` (they left the catalog)."""
        for replica_id in [r for r in self._scrapes if r not in keep]:
            del self._scrapes[replica_id]
        for replica_id in [r for r, n in self._inflight.items() if r not in keep and n == 0]:
            del self._inflight[replica_id]

    def scraped_at(self, replica_id: str) -> float | None:
        scrape = self._scrapes.get(replica_id)
        return None if scrape is None else scrape.at

    # ---- /metrics -----------------------------------------------------------------------------

    def render(self, deployments: Iterable[Deployment]) -> str:
        """Prometheus text: what routing sees of each replica of a deployment routed on the
        board (``BOARD_STRATEGIES``), so an operator can check a decision against its inputs:
        this process's in-flight count and the load it compares; for scraped replicas the
        engine's last running, waiting and KV-cache figures and the scrape's age (a replica
        whose age passes the stale bound is judged by the in-flight count alone)."""
        now = self._clock()
        inflight = ["# HELP inferenceops_replica_in_flight Requests this process has on the "
                    "replica now.", "# TYPE inferenceops_replica_in_flight gauge"]
        loads = ["# HELP inferenceops_replica_load The load engine-aware routing compares "
                 "(engine figures when fresh, else the in-flight count).",
                 "# TYPE inferenceops_replica_load gauge"]
        running = ["# HELP inferenceops_engine_requests_running Requests running on the engine "
                   "at its last scrape.", "# TYPE inferenceops_engine_requests_running gauge"]
        waiting = ["# HELP inferenceops_engine_requests_waiting Requests queued on the engine "
                   "at its last scrape.", "# TYPE inferenceops_engine_requests_waiting gauge"]
        kv = ["# HELP inferenceops_engine_kv_cache_usage_ratio KV-cache use (0..1) at the "
              "engine's last scrape.", "# TYPE inferenceops_engine_kv_cache_usage_ratio gauge"]
        age = ["# HELP inferenceops_engine_scrape_age_seconds Seconds since the engine's "
               "metrics were last scraped.", "# TYPE inferenceops_engine_scrape_age_seconds gauge"]
        stale = ["# HELP inferenceops_engine_scrape_stale 1 when the last scrape is older than "
                 "the stale bound (routing uses the in-flight count).",
                 "# TYPE inferenceops_engine_scrape_stale gauge"]
        for deployment in deployments:
            if deployment.routing not in BOARD_STRATEGIES:
                continue  # its strategy keeps its own counts; nothing here is about it
            for replica in deployment.replicas:
                labels = (f'deployment="{label_value(deployment.name)}",'
                          f'replica="{label_value(replica.id)}"')
                inflight.append(f"inferenceops_replica_in_flight{{{labels}}} "
                                f"{self.in_flight(replica.id)}")
                loads.append(f"inferenceops_replica_load{{{labels}}} {self.load(replica.id):g}")
                scrape = self._scrapes.get(replica.id)
                if scrape is None:
                    continue
                running.append(f"inferenceops_engine_requests_running{{{labels}}} "
                               f"{scrape.load.running:g}")
                waiting.append(f"inferenceops_engine_requests_waiting{{{labels}}} "
                               f"{scrape.load.waiting:g}")
                kv.append(f"inferenceops_engine_kv_cache_usage_ratio{{{labels}}} "
                          f"{scrape.load.kv_usage:g}")
                seconds = max(now - scrape.at, 0.0)
                age.append(f"inferenceops_engine_scrape_age_seconds{{{labels}}} {seconds:.3f}")
                stale.append(f"inferenceops_engine_scrape_stale{{{labels}}} "
                             f"{int(seconds > self.stale_after_s)}")
        return "\n".join([*inflight, *loads, *running, *waiting, *kv, *age, *stale]) + "\n"
