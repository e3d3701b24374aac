"""This process as an *instance* of the shared ledger: an id, a heartbeat, and what liveness means.

Why: a lease (a concurrency slot, a budget reservation) outlives any legitimate
request (``lease_s`` = total timeout + queue wait + margin, ~26 min by default), so
when a gateway was ``kill -9``-ed its slots stayed held that long and locked a team
with a small concurrency limit out. So every lease in the Redis ledger also names the
instance that took it, and an instance is *live* only while its heartbeat key exists:

* **Instance id** — 128 random bits made when the ledger object is built (once per
  process start), never reused: a restarted process is a new instance, so it neither
  inherits nor frees the old one's leases.
* **Heartbeat** — ``InstanceHeartbeat`` (a ``Feed`` of the gateway state, run by a
  ``Supervisor``) sets the key ``{P}:i:<id>`` with a TTL of ``ttl_s`` every
  ``interval_s`` (2 s / 6 s by default): one small ``EVALSHA`` off the hot path, which
  also (re)adds the id to the instance registry. A graceful stop deletes the key.
* **Liveness check** — the ledger script walks the registry at most once per
  ``check_s`` (``interval_s / 2``) per Redis prefix, piggybacked on an admission or
  a read that involves leases; the leases of an instance whose key is gone are
  freed (at most ``REAP`` per call, the rest on the next calls), reservations dropped
  uncharged. A dead instance's slots are thus free ``ttl_s + check_s`` after its last
  heartbeat at the latest (7 s by default; the settings cap it at 12.5 s).
* **Freed exactly once** — a lease is removed by its member name (request id @
  admission time), so whoever comes second (the reaper, a late settle or release,
  expiry) finds nothing and subtracts nothing.

Safety of this process's own leases: the script admits a request with leases only
while this instance's key exists, and the client refuses (``HeartbeatLost``, a
``LedgerUnavailable``: the fail-open/closed policy applies) once its last successful
heartbeat is ``ttl_s`` old, because Redis may then have forgotten it and other
replicas may be freeing its leases. The heartbeat keeps trying every ``interval_s``
and, once through, the instance is live again with the *same* id: leases not freed
meanwhile count again (they are genuinely in flight), freed ones stay freed.

A partition longer than ``ttl_s`` (or a process stalled that long) therefore frees
this instance's in-flight slots and reservations early: other replicas may admit
up to that many extra requests while they run (a concurrency limit or hard budget
may be exceeded by at most what was in flight here). Their later settles and
releases free nothing (already freed) but still add the actual cost to spent, so no
spend is lost and nothing is counted twice. New admissions are refused or unmetered
(per ``admission_fail_open``) until the heartbeat is back, so the overshoot is bounded.

The memory ledger needs none of this: its leases live and die with its process.
No Redis I/O here beyond calling the ledger's ``beat``/``leave``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from inferenceops.admission.ledger import LedgerUnavailable

if TYPE_CHECKING:
    from inferenceops.admission.control import AdmissionControl
    from inferenceops.admission.metrics import AdmissionMetrics

log = logging.getLogger("inferenceops.admission.instance")


def new_instance_id() -> str:
    """32 hex characters from the OS's CSPRNG: unique per process start, in practice forever."""
    return os.urandom(16).hex()


@dataclass(frozen=True, slots=True)
class Liveness:
    """How often an instance proves it is alive, and how long Redis believes it without proof.

    ``ttl_s >= 2 * interval_s``, so one lost or slow heartbeat never kills a live instance.
    ``check_s`` is how often (per prefix) the script looks for dead instances: None for
    ``interval_s / 2``; 0 for on every call (tests).
    """

    interval_s: float = 2.0
    ttl_s: float = 6.0
    check_s: float | None = None

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise ValueError(f"heartbeat interval must be > 0 s, not {self.interval_s!r}")
        if not self.ttl_s >= 2 * self.interval_s:
            raise ValueError(f"heartbeat ttl ({self.ttl_s!r} s) must be at least twice the "
                             f"interval ({self.interval_s!r} s), so one lost heartbeat is survived")
        if self.check_s is not None and not self.check_s >= 0:
            raise ValueError(f"liveness check period must be >= 0 s, not {self.check_s!r}")

    @property
    def check_every_s(self) -> float:
        return self.interval_s / 2 if self.check_s is None else self.check_s

    @property
    def freed_within_s(self) -> float:
        """The longest a dead instance's leases stay held after its last heartbeat (given traffic)."""
        return self.ttl_s + self.check_every_s


@runtime_checkable
class Beating(Protocol):
    """A ledger whose leases belong to a live instance (``RedisLedger``)."""

    instance_id: str
    liveness: Liveness

    @property
    def live(self) -> bool: ...

    def supervise(self) -> None: ...

    async def beat(self) -> None: ...

    async def leave(self) -> None: ...


class InstanceHeartbeat:
    """Keeps this process's instance live: a beat at start, then every ``interval_s``.

    A supervised ``Service``: ``start`` registers the instance before the process
    reports ready (a failure is logged and retried by ``run``, and admissions that take
    leases are refused meanwhile), ``stop`` deletes the heartbeat so the leases this
    process still holds are freed at once rather than after ``ttl_s``.
    """

    name = "admission-heartbeat"

    def __init__(self, ledger: Beating, metrics: AdmissionMetrics | None = None) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._failing = 0  # consecutive failed beats
        self._lapsed = False
        self.beats = 0  # successful ones (tests wait on it)

    async def start(self) -> None:
        ledger = self._ledger
        ledger.supervise()
        log.info("admission instance %s (pid %d): heartbeat every %gs, ttl %gs",
                 ledger.instance_id, os.getpid(), ledger.liveness.interval_s, ledger.liveness.ttl_s)
        await self.beat_once()

    async def stop(self) -> None:
        try:
            await self._ledger.leave()
        except LedgerUnavailable as exc:
            log.warning("could not remove the heartbeat of instance %s (its leases are freed "
                        "once it expires): %s", self._ledger.instance_id, exc)

    async def run(self) -> None:
        """Beats on a fixed pace (a slow call does not push every later beat back)."""
        loop = asyncio.get_running_loop()
        interval = self._ledger.liveness.interval_s
        due = loop.time()
        while True:
            due += interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                due = loop.time()
            await self.beat_once()

    async def beat_once(self) -> bool:
        """One heartbeat; failures are logged (once per outage) and counted, never raised."""
        ledger = self._ledger
        try:
            await ledger.beat()
        except LedgerUnavailable as exc:
            self._failing += 1
            if self._metrics is not None:
                self._metrics.heartbeat_failures += 1
            if self._failing == 1:
                log.warning("heartbeat of admission instance %s failed: %s", ledger.instance_id, exc)
            if not ledger.live and not self._lapsed:
                self._lapsed = True
                log.error("admission instance %s has not reached Redis for %gs: other replicas may "
                          "free its slots and reservations now; admissions that take them are refused "
                          "(or unmetered with admission_fail_open) until a heartbeat gets through",
                          ledger.instance_id, ledger.liveness.ttl_s)
            return False
        if self._failing:
            log.warning("heartbeat of admission instance %s is back after %d failed attempts",
                        ledger.instance_id, self._failing)
        self._failing, self._lapsed = 0, False
        self.beats += 1
        return True


def instance_heartbeat(admission: AdmissionControl | None) -> InstanceHeartbeat | None:
    """The heartbeat the admission ledger needs, if it is shared (None for the memory ledger)."""
    if admission is None or not isinstance(admission.ledger, Beating):
        return None
    return InstanceHeartbeat(admission.ledger, admission.metrics)
