"""The long-lived objects one gateway process serves with, built once at start.

The hot path reads ``snapshot`` (swapped whole, never mutated) and uses the
pooled client through ``forwarder``. No module globals: everything a request
needs hangs off this one object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from inferenceops.admission.control import AdmissionControl
from inferenceops.engines.openai_compat import OpenAICompatClient
from inferenceops.engines.simulator.mounts import SimulatorMounts
from inferenceops.gateway.http import ASGIApp
from inferenceops.gateway.key_use import KeyUseRecorder
from inferenceops.gateway.proxy import Forwarder
from inferenceops.platform import KeyHasher, Snapshot


class Feed(Protocol):
    """Something that keeps state current from outside the data plane (e.g. the store)."""

    async def start(self, state: GatewayState) -> None: ...

    async def stop(self) -> None: ...


@dataclass(eq=False)
class GatewayState:
    snapshot: Snapshot
    hasher: KeyHasher
    client: OpenAICompatClient
    forwarder: Forwarder
    max_body_bytes: int
    max_tokens_limit: int
    simulators: SimulatorMounts = field(default_factory=SimulatorMounts)
    key_uses: KeyUseRecorder = field(default_factory=KeyUseRecorder)
    admin_app: ASGIApp | None = None  # served under /admin/; built by the composition root
    admission: AdmissionControl | None = None
    feeds: list[Feed] = field(default_factory=list)
    ready: bool = False

    async def start(self) -> None:
        await self.client.start()
        for feed in self.feeds:
            await feed.start(self)
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        for feed in self.feeds:
            await feed.stop()
        await self.client.close()
        if self.admission is not None:
            await self.admission.ledger.close()
        for app in self.simulators.values():
            aclose = getattr(app, "aclose", None)
            if aclose is not None:
                await aclose()
