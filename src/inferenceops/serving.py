"""Running an application factory under granian (default) or uvicorn.

uvicorn speaks ASGI; granian serves the gateway over its native RSGI interface
(``interface="rsgi"``: the factory's app has ``__rsgi__``, see ``gateway.rsgi``) and
anything else, such as the simulator, over ASGI.

Both get the same graceful shutdown contract: on SIGTERM/SIGINT stop
accepting connections, let in-flight requests and streams finish for up to
``shutdown_timeout_s``, then exit. Both hand the application the TCP peer as
``scope["client"]``, never an address from a header (``client_address``).
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from inferenceops.engines.simulator import SimulatorApp

SIMULATOR_ENV = "INFERENCEOPS_SIMULATE_"


def run(factory: str, *, host: str, port: int, workers: int, server: Literal["granian", "uvicorn"],
        shutdown_timeout_s: float, log_level: str = "info", access_log: bool = False,
        interface: Literal["asgi", "rsgi"] = "asgi") -> None:
    if server == "uvicorn":
        import uvicorn

        # proxy_headers off: uvicorn would otherwise let a loopback peer name any client address
        # in X-Forwarded-For; which forwarded address to believe is ours to decide
        # (``client_address``, INFERENCEOPS_TRUSTED_PROXIES), the same under both servers.
        uvicorn.run(factory, factory=True, host=host, port=port, workers=workers,
                    timeout_graceful_shutdown=math.ceil(shutdown_timeout_s), log_level=log_level,
                    access_log=access_log, lifespan="on", proxy_headers=False)
        return
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    Server(
        factory, address=host, port=port, workers=workers,
        interface=Interfaces.RSGI if interface == "rsgi" else Interfaces.ASGI,
        factory=True, loop=Loops.auto, log_level=LogLevels(log_level), log_access=access_log,
        workers_kill_timeout=max(1, math.ceil(shutdown_timeout_s)), backlog=2048,
        http1_settings=None, websockets=False,  # no route speaks WebSocket: upgrades are plain HTTP
    ).serve()


def simulator_app() -> SimulatorApp:
    """ASGI factory for ``inferenceops simulate``: its options arrive through the environment."""
    from inferenceops.engines.simulator import build_simulator_app, load_profile

    profile = load_profile(os.environ[SIMULATOR_ENV + "PROFILE"])
    policy = os.environ.get(SIMULATOR_ENV + "SCHEDULING_POLICY")
    if policy:
        profile = profile.model_copy(update={"scheduling_policy": policy})
    return build_simulator_app(profile, model=os.environ[SIMULATOR_ENV + "MODEL"],
                               seed=int(os.environ.get(SIMULATOR_ENV + "SEED", "0")))
