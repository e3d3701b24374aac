"""The simulated engines one gateway process serves in-process, following catalog changes.

A mount is anything with ``id``, ``profile``, ``served_model``, ``seed`` and
``scheduling_policy`` (its deployment's, over the profile's)
(``config.spec.SimulatorMount``). ``sync`` keeps a running simulator whose mount is
unchanged (its queue and caches stay warm), starts new ones, and hands back
the ones to close; a mount whose profile cannot be loaded is skipped with an
error in the log (its deployment's requests then fail as unreachable).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from .app import SimulatorApp, build_simulator_app
from .profile import load_profile

log = logging.getLogger("inferenceops.simulator")


class Mount(Protocol):
    # Read-only members, so a frozen dataclass (``config.spec.SimulatorMount``) is a Mount.
    @property
    def id(self) -> str: ...
    @property
    def profile(self) -> str: ...
    @property
    def served_model(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def scheduling_policy(self) -> str: ...


class SimulatorMounts:
    """Simulator apps by mount id; reads are dict lookups (``get``)."""

    def __init__(self) -> None:
        self._apps: dict[str, SimulatorApp] = {}
        self._made_from: dict[str, tuple[str, str, int, str]] = {}

    def get(self, mount_id: str) -> Any:
        return self._apps.get(mount_id)

    def values(self) -> Iterator[SimulatorApp]:
        return iter(list(self._apps.values()))

    def __len__(self) -> int:
        return len(self._apps)

    def sync(self, mounts: Iterable[Mount], *, strict: bool = False) -> list[SimulatorApp]:
        """Serve exactly ``mounts``; returns the apps that left (the caller closes them).

        ``strict``: a profile that cannot be loaded raises ``ValueError`` (at start-up,
        where the operator should hear of it) instead of being skipped.
        """
        apps: dict[str, SimulatorApp] = {}
        made_from: dict[str, tuple[str, str, int, str]] = {}
        for mount in mounts:
            recipe = (mount.profile, mount.served_model, mount.seed, mount.scheduling_policy)
            app = self._apps.get(mount.id)
            if app is None or self._made_from.get(mount.id) != recipe:
                try:
                    profile = load_profile(mount.profile).model_copy(
                        update={"scheduling_policy": mount.scheduling_policy})
                    app = build_simulator_app(profile, model=mount.served_model, seed=mount.seed)
                except ValueError as exc:
                    if strict:
                        raise ValueError(f"deployment replica {mount.id}: {exc}") from None
                    log.error("simulated replica %s not started: %s", mount.id, exc)
                    continue
            apps[mount.id] = app
            made_from[mount.id] = recipe
        retired = [app for mount_id, app in self._apps.items() if apps.get(mount_id) is not app]
        self._apps, self._made_from = apps, made_from
        return retired
