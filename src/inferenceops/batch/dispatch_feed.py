"""What the dispatcher (``batch.dispatch``) is told: each claimed line's place, each deployment's load.

* ``item_of``: a claimed line and its input bytes → a dispatch ``Item``: the deployment its
  model is served by (from the snapshot), the batch's deadline, the team and its weight
  (the policy's fair-queue weight), and the prompt's prefix hash — the same hash prefix-
  affinity routing keys on (``routing.RouteFacts.prefix_hash``), so lines grouped here
  land on the replica that caches their prefix;
* ``LoadReader.load``: a deployment's ``Load`` from the best source this process has:
  fresh engine scrapes of its replicas (``EngineBoard``; the scraper keeps them for
  deployments routed by engine load), else its gate's in-flight count against
  ``capacity`` (``AdmissionControl.gate``), else nothing (``none``).

Reads memory only (the snapshot, the board, the gate): no I/O, no store.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import orjson

from inferenceops.admission.control import AdmissionControl
from inferenceops.batch.dispatch import EngineMaxima, Item, Load, engine_load
from inferenceops.platform import ApiKey, Deployment, Snapshot
from inferenceops.platform.priority import Priority
from inferenceops.routing.engine_board import EngineBoard
from inferenceops.routing.protocol import RouteFacts
from inferenceops.store.records import ClaimedLine

P = TypeVar("P")
#: The deployment key of lines whose model names no deployment (they fail in the pipeline).
NO_DEPLOYMENT = ""


def item_of(line: ClaimedLine, raw: bytes, key: ApiKey | None, snapshot: Snapshot,
            payload: P) -> Item[P]:
    """Where ``line`` goes and how it is ordered; a line that cannot be read still gets an
    item (the executor runs it, and the pipeline says what is wrong with it)."""
    deployment = NO_DEPLOYMENT
    prefix = None
    try:
        body = orjson.loads(raw).get("body")
    except (orjson.JSONDecodeError, AttributeError):
        body = None
    if isinstance(body, dict):
        name = body.get("model")
        model = snapshot.catalog.model(name) if isinstance(name, str) else None
        if model is not None:
            deployment = model.deployment.name
        prefix = RouteFacts(doc=body).prefix_hash
    team = line.team_id or (key.team_id if key is not None else None)
    weight = float(snapshot.policy.weight(team))
    deadline = line.expires_at.timestamp() if isinstance(line.expires_at, datetime) else 0.0
    return Item(deployment, deadline, team or line.key_id, weight, prefix, payload,
                batch=line.batch_id, left=line.left)


class LoadReader:
    """A deployment's ``Load`` from this process's engine board or admission gate."""

    __slots__ = ("board", "admission", "maxima")

    def __init__(self, board: EngineBoard | None, admission: AdmissionControl | None,
                 maxima: EngineMaxima) -> None:
        self.board = board
        self.admission = admission
        self.maxima = maxima

    def scraped_at(self, deployment: Deployment) -> float | None:
        """When the newest scrape of its replicas was taken (None: never / no board)."""
        if self.board is None:
            return None
        times = [t for r in deployment.replicas if (t := self.board.scraped_at(r.id)) is not None]
        return max(times) if times else None

    def load(self, deployment: Deployment | None) -> Load:
        if deployment is None:
            return Load("none")
        if self.board is not None:
            fresh = {r.id: (seen.running, seen.waiting) for r in deployment.replicas
                     if r.id not in deployment.drained
                     and (seen := self.board.fresh(r.id)) is not None}
            if fresh:
                load = engine_load(fresh, self.maxima)
                slots = load.slots
                if deployment.capacity is not None:  # the operator's word beats a learned bound
                    share = len(fresh) / max(1, len(deployment.replicas) - len(deployment.drained))
                    slots = deployment.capacity * share
                return Load("engine", load.busy, load.queued, slots,
                            ordered=deployment.engine_priority)
        gate = self.admission.gate(deployment.name) if self.admission is not None else None
        if gate is not None and deployment.capacity is not None:
            waiting = gate.waiting_by_priority().get(Priority.INTERACTIVE, 0)
            return Load("gateway", float(gate.in_flight), float(waiting),
                        float(deployment.capacity))
        return Load("none")
