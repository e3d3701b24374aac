"""The data-plane application: lifespan, routing, and the one error boundary.

Served over ASGI (uvicorn, the in-process tests) and over RSGI (granian, the default):
RSGI serves the inference routes natively (``gateway.rsgi``) and hands every other
request to the ASGI path below through ``rsgi.AsgiBridge``, so there is one router.

Outermost → innermost for an HTTP request:

1. ``RequestFacts`` – request id (client's or new) and the overhead clock start
   first, so every response, errors included, carries both headers.
2. error boundary – typed errors become OpenAI error JSON (``error_shape``);
   anything unexpected is logged and becomes a plain 500, never a hang.
3. router – exact-path dict lookup, then the prefixes (``/v1/models/``,
   ``/_sim/``, ``/admin/``); wrong method → 405, unknown path → 404, both
   OpenAI-shaped. ``/admin/`` goes whole to the admin application (its own
   auth, errors and OpenAPI); the data plane never imports it (the composition
   root hands it over as a ``gateway.ondemand.OnDemandApp``, built on its first
   request). ``/v1/files`` and ``/v1/batches`` go whole to the Files and Batch APIs (``batch.routes``,
   ``batch.batch_routes``, handed over the same way: they read the store, so the data plane
   does not import them).
4. handler – runs its pipeline stages (``gateway.handlers``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from inferenceops.error_shape import internal_error, sse_error_event
from inferenceops.errors import InferenceOpsError, MethodNotAllowed, NotFound
from inferenceops.gateway import handlers, rsgi
from inferenceops.gateway.http import AsgiSink, Receive, Scope, Send, respond_error
from inferenceops.gateway.state import GatewayState
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.platform import Endpoint

log = logging.getLogger("inferenceops.gateway")

Handler = Callable[[GatewayState, RequestFacts, Scope, Receive, AsgiSink, Send], Awaitable[None]]
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
SIMULATOR_PREFIX = "/_sim/"
ADMIN_PREFIX = "/admin/"
MODELS_PREFIX = "/v1/models/"
FILES_PATH = "/v1/files"
BATCHES_PATH = "/v1/batches"
_BATCH_PREFIXES = (FILES_PATH + "/", BATCHES_PATH + "/")


def _inference(endpoint: Endpoint) -> Handler:
    async def handle(state: GatewayState, facts: RequestFacts, scope: Scope,
                     receive: Receive, sink: AsgiSink, send: Send) -> None:
        await handlers.inference(state, endpoint, facts, receive, send, sink)
    return handle


async def _models(state: GatewayState, facts: RequestFacts, scope: Scope, receive: Receive,
                  sink: AsgiSink, send: Send) -> None:
    await handlers.list_models(state, facts, send)


async def _quota(state: GatewayState, facts: RequestFacts, scope: Scope, receive: Receive,
                 sink: AsgiSink, send: Send) -> None:
    await handlers.quota(state, facts, send)


async def _usage(state: GatewayState, facts: RequestFacts, scope: Scope, receive: Receive,
                 sink: AsgiSink, send: Send) -> None:
    await handlers.usage(state, facts, scope.get("query_string", b""), send)


async def _metrics(state: GatewayState, facts: RequestFacts, scope: Scope, receive: Receive,
                   sink: AsgiSink, send: Send) -> None:
    client = scope.get("client")
    await handlers.metrics(state, facts, send, from_loopback=client is not None and client[0] in _LOOPBACK)


async def _healthz(state: GatewayState, facts: RequestFacts, scope: Scope, receive: Receive,
                   sink: AsgiSink, send: Send) -> None:
    await handlers.healthz(facts, send)


async def _readyz(state: GatewayState, facts: RequestFacts, scope: Scope, receive: Receive,
                  sink: AsgiSink, send: Send) -> None:
    await handlers.readyz(state, facts, send)


#: The inference routes (POST): over RSGI granian serves these natively (``gateway.rsgi``);
#: every other route is bridged to the ASGI router below.
INFERENCE: dict[str, Endpoint] = {"/v1/chat/completions": Endpoint.CHAT,
                                  "/v1/completions": Endpoint.COMPLETIONS,
                                  "/v1/embeddings": Endpoint.EMBEDDINGS}

ROUTES: dict[str, dict[str, Handler]] = {
    **{path: {"POST": _inference(endpoint)} for path, endpoint in INFERENCE.items()},
    "/v1/models": {"GET": _models},
    "/v1/quota": {"GET": _quota},
    "/v1/usage": {"GET": _usage},
    "/metrics": {"GET": _metrics},
    "/healthz": {"GET": _healthz},
    "/readyz": {"GET": _readyz},
}


class GatewayApp:
    """The data plane from one ``GatewayState``: an ASGI3 callable (uvicorn, tests) and an
    RSGI application (granian, ``gateway.rsgi``) with the same routes and lifecycle."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self._bridge = rsgi.AsgiBridge(self)

    # ---- RSGI (granian) -----------------------------------------------------------------------

    async def __rsgi__(self, scope: rsgi.RsgiScope, proto: rsgi.RsgiProtocol) -> None:
        endpoint = INFERENCE.get(scope.path)
        if endpoint is not None and scope.method == "POST":
            await rsgi.serve_inference(self.state, endpoint, scope, proto)
        else:
            await self._bridge(scope, proto)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Startup, before the worker serves (the loop is not running yet)."""
        try:
            loop.run_until_complete(self.state.start())
        except Exception:
            log.exception("startup failed")
            raise SystemExit(1) from None

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Shutdown, once the worker stopped serving (in-flight requests had their time)."""
        loop.run_until_complete(self.state.stop())

    # ---- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith(SIMULATOR_PREFIX):
            await self._simulator(scope, receive, send)
            return
        if path.startswith(ADMIN_PREFIX) and self.state.admin_app is not None:
            await self.state.admin_app(scope, receive, send)
            return
        if self.state.files_app is not None and (
                path in (FILES_PATH, BATCHES_PATH) or path.startswith(_BATCH_PREFIXES)):
            await self.state.files_app(scope, receive, send)
            return
        facts = RequestFacts.from_headers(scope["headers"])
        sink = AsgiSink(send, receive)
        try:
            await self._route(path, scope["method"])(self.state, facts, scope, receive, sink, send)
        except InferenceOpsError as exc:
            await self._fail(facts, sink, send, exc)
        except Exception as exc:  # the top-level boundary: log it, answer 500, keep serving
            await self._fail(facts, sink, send, internal_error(exc))

    @staticmethod
    def _route(path: str, method: str) -> Handler:
        methods = ROUTES.get(path)
        if methods is None and path.startswith(MODELS_PREFIX) and len(path) > len(MODELS_PREFIX):
            model_id = path[len(MODELS_PREFIX):]

            async def _model(state: GatewayState, facts: RequestFacts, scope: Scope,
                             receive: Receive, sink: AsgiSink, send: Send) -> None:
                await handlers.get_model(state, model_id, facts, send)
            methods = {"GET": _model}
        if methods is None:
            raise NotFound(f"Unknown request URL: {method} {path}.", code="unknown_url")
        handler = methods.get(method)
        if handler is None:
            raise MethodNotAllowed(f"{method} is not allowed on {path}; use "
                                   f"{', '.join(methods)}.",
                                   headers={"Allow": ", ".join(methods)})
        return handler

    @staticmethod
    async def _fail(facts: RequestFacts, sink: AsgiSink, send: Send, exc: InferenceOpsError) -> None:
        if sink.started:  # too late for a status: finish the stream with an error event
            await sink.fail(sse_error_event(exc))
            return
        await respond_error(send, facts, exc)

    async def _simulator(self, scope: Scope, receive: Receive, send: Send) -> None:
        """In-process simulated engines, reachable from this machine only."""
        rest = scope["path"][len(SIMULATOR_PREFIX):]
        mount, _, sub = rest.partition("/")
        app = self.state.simulators.get(mount)
        client = scope.get("client")
        if app is None or client is None or client[0] not in _LOOPBACK:
            facts = RequestFacts.from_headers(scope["headers"])
            await respond_error(send, facts, NotFound(f"Unknown request URL: {scope['method']} "
                                                    f"{scope['path']}.", code="unknown_url"))
            return
        await app({**scope, "path": "/" + sub, "raw_path": ("/" + sub).encode()}, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.state.start()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.state.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
