"""An ASGI application built on its first request, and the service that closes it.

A serving worker mounts sub-applications it rarely uses (the admin API under
``/admin/``): importing and assembling them costs memory and start-up time in
every worker, so the composition root hands this module a ``build`` function
instead and the first request that needs the application runs it.

* **Once**: the first request starts one build; every request that arrives
  while it runs awaits that same build (single flight: no await between the
  check and the start, so no lock is needed). A caller leaving mid-build does
  not cancel it (``asyncio.shield``).
* **Off the event loop**: ``build`` runs in a thread (``asyncio.to_thread``), so
  the data plane keeps serving while modules are imported.
* **Failures are answered, never a 500 or a hang**: a ``build`` that raises is
  logged with its traceback and every request waiting on it gets the OpenAI
  error shape, 503 ``service_unavailable`` with this app's ``code``. The build is
  tried again by the first request after ``retry_s`` (a broken configuration
  costs one build per ``retry_s``, not one per request).
* As a supervised ``Service`` (``name``) it waits for a build still running at
  shutdown and then awaits the ``close`` the build returned (a database pool).

Knows nothing of what it builds; no import of the built application here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from inferenceops.errors import Unavailable
from inferenceops.gateway.http import ASGIApp, Receive, Scope, Send, respond_error
from inferenceops.pipeline.facts import RequestFacts

log = logging.getLogger("inferenceops.gateway")

Close = Callable[[], Awaitable[None]]
#: Builds the application (in a thread) and says how to close it at shutdown.
Build = Callable[[], tuple[ASGIApp, Close | None]]
DEFAULT_RETRY_S = 5.0


class OnDemandApp:
    """ASGI3 callable that builds the real application on its first request."""

    def __init__(self, name: str, build: Build, *, what: str, code: str,
                 retry_s: float = DEFAULT_RETRY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.what = what
        self.code = code
        self._build = build
        self._retry_s = retry_s
        self._clock = clock
        self._app: ASGIApp | None = None
        self._close: Close | None = None
        self._building: asyncio.Task[None] | None = None
        self._failed_at: float | None = None
        self.builds = 0  # builds started (tests and operators: "built once")

    @property
    def built(self) -> bool:
        return self._app is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if app is None:
            app = await self._ensure()
        if app is None:
            facts = RequestFacts.from_headers(scope.get("headers", ()))
            await respond_error(send, facts, Unavailable(
                f"{self.what} could not be started (the server log says why); try again later.",
                code=self.code, headers={"Retry-After": str(max(1, round(self._retry_s)))}))
            return
        await app(scope, receive, send)

    async def _ensure(self) -> ASGIApp | None:
        building = self._building
        if building is None or (building.done() and self._app is None and self._may_retry()):
            self.builds += 1
            building = self._building = asyncio.ensure_future(self._run_build())
        await asyncio.shield(building)
        return self._app

    def _may_retry(self) -> bool:
        return self._failed_at is None or self._clock() - self._failed_at >= self._retry_s

    async def _run_build(self) -> None:
        started = time.perf_counter()
        try:
            app, close = await asyncio.to_thread(self._build)
        except Exception:  # noqa: BLE001 - the boundary of a sub-application: logged, answered 503
            self._failed_at = self._clock()
            log.exception("%s could not be built; answering 503 and trying again after %.0f s",
                          self.what, self._retry_s)
            return
        self._app, self._close, self._failed_at = app, close, None
        log.info("%s: built on its first request in %.0f ms", self.what,
                 (time.perf_counter() - started) * 1000)

    # -- Service ---------------------------------------------------------------------------

    async def start(self) -> None:
        return None  # nothing before the process is ready: the build waits for a request

    async def run(self) -> None:
        return None

    async def stop(self) -> None:
        if self._building is not None and not self._building.done():
            await asyncio.shield(self._building)
        if self._close is not None:
            await self._close()
