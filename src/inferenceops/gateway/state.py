"""The long-lived objects one gateway process serves with, built once at start.

The hot path reads ``snapshot`` (swapped whole, never mutated) and runs the
``pipeline``. Every background task — the snapshot feed, the outbox writer,
the Redis heartbeat — is a service of the one ``supervisor``, started in order
before the process says it is ready and stopped in reverse at shutdown. No
module globals: everything a request needs hangs off this one object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from inferenceops.admission.control import AdmissionControl
from inferenceops.engines.openai_compat import OpenAICompatClient
from inferenceops.engines.simulator.mounts import SimulatorMounts
from inferenceops.gateway.http import ASGIApp
from inferenceops.metering.reports import UsageSource
from inferenceops.outbox import Outbox
from inferenceops.pipeline.kernel import Pipeline
from inferenceops.platform import KeyHasher, Snapshot
from inferenceops.supervisor import Supervisor


@dataclass(eq=False)
class GatewayState:
    snapshot: Snapshot
    hasher: KeyHasher
    client: OpenAICompatClient
    pipeline: Pipeline
    outbox: Outbox
    simulators: SimulatorMounts = field(default_factory=SimulatorMounts)
    admin_app: ASGIApp | None = None  # served under /admin/; built on its first request
    files_app: ASGIApp | None = None  # serves /v1/files (batch.routes); built on its first request
    usage: UsageSource | None = None  # answers GET /v1/usage (the store's rollups); None: 503
    supervisor: Supervisor = field(default_factory=Supervisor)
    #: More ``/metrics`` text from this process's background services (the batch executor's
    #: promotions): each called per scrape, in order.
    metric_sources: list[Callable[[], str]] = field(default_factory=list)
    ready: bool = False

    @property
    def admission(self) -> AdmissionControl | None:
        """The pipeline's admission control (None: admission is off)."""
        return self.pipeline.admission

    @admission.setter
    def admission(self, admission: AdmissionControl | None) -> None:
        self.pipeline.admission = admission

    async def start(self) -> None:
        await self.client.start()
        await self.supervisor.start()
        self.ready = True

    async def stop(self) -> None:
        """Not ready any more, then every service in reverse order (the outbox flushes last)."""
        self.ready = False
        await self.supervisor.stop()
        await self.client.close()
        if self.admission is not None:
            await self.admission.ledger.close()
        for app in self.simulators.values():
            aclose = getattr(app, "aclose", None)
            if aclose is not None:
                await aclose()
