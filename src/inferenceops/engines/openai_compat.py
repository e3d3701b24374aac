"""The OpenAI-compatible dialect: vLLM, SGLang, llama.cpp server, Ollama, TGI, OpenAI.

Sends the original request bytes to a replica over a pooled keep-alive
connection (``engines.http1``, one pool per replica) and hands the response
back unparsed (a non-streamed answer is parsed once, to check it is one and
for its usage). Every transport and timeout failure, and every answer that is
not one (an error status, a redirect, a body that is not JSON or is larger
than ``max_response_bytes``) is translated here into the typed errors of
``inferenceops.errors``, redacted of secrets (``engines.redaction``); nothing
above this module sees a socket error or an engine's raw words. Messages name
the deployment, never a replica's address. Knows nothing of teams or keys.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from inferenceops import __version__
from inferenceops.engines import upstream_errors
from inferenceops.engines.deadlines import Deadlines
from inferenceops.engines.http1 import (
    ConnectFailed,
    Connection,
    ConnectionLost,
    HTTPClientError,
    Pool,
    ReadTimeout,
)
from inferenceops.engines.redaction import Redactor
from inferenceops.errors import (
    UpstreamConnectFailed,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from inferenceops.platform import Deployment, Replica

_ENDPOINTS = ("chat/completions", "completions", "embeddings")
#: vLLM's runtime LoRA endpoints (``VLLM_ALLOW_RUNTIME_LORA_UPDATING``), for ``routing.adapters``.
LORA_ACTIONS = ("load_lora_adapter", "unload_lora_adapter")


class UpstreamAnswer(NamedTuple):
    """A whole non-streamed answer: 2xx, its body a JSON object (``doc``, parsed once)."""

    status: int
    content_type: bytes
    body: bytes
    doc: dict[str, Any]


class UpstreamResponse:
    """A streamed upstream response whose head arrived; the body is read on demand."""

    __slots__ = ("_conn", "_between", "_total", "_deployment", "replica", "status",
                 "content_type")

    def __init__(self, conn: Connection, deployment: Deployment, replica: Replica,
                 deadline: float) -> None:
        self._conn = conn
        self._between = deployment.timeouts.between_chunks_s
        self._total = deployment.timeouts.total_s
        self._deployment = deployment.name
        self.replica = replica.id
        self.status = conn.status
        self.content_type = conn.content_type
        conn.watch(self._between, deadline)

    async def next_chunk(self) -> bytes:
        """The next piece of the body as it arrives; ``b""`` at the end.

        Two clocks run: ``between_chunks_s`` since this call began waiting and ``total_s``
        since the request was sent; whichever ends first cuts the stream, and the error
        says which one it was. The connection keeps both with one timer for the whole
        response (``Connection.watch``), not one per chunk.
        """
        try:
            return await self._conn.next_chunk()
        except ReadTimeout as exc:
            self.close()
            name = self._deployment
            if exc.total:
                raise UpstreamTimeout(f"deployment {name!r} did not finish the stream within its "
                                      f"total timeout of {self._total:g}s",
                                      extra={"deployment": name},
                                      detail={"timeout": "total_s"}) from None
            raise UpstreamTimeout(f"deployment {name!r} sent nothing for {self._between:g}s "
                                  "mid-stream", extra={"deployment": name},
                                  detail={"timeout": "between_chunks_s"}) from None
        except HTTPClientError as exc:
            self.close()
            raise UpstreamUnavailable(f"deployment {self._deployment!r} broke off the stream: "
                                      f"{_cause(exc)}", extra={"deployment": self._deployment},
                                      detail={"cause": str(exc)}) from None

    def close(self) -> None:
        """Abandon the response (client went away, or we failed): drop the connection."""
        self._conn.abort()

    def release(self) -> None:
        """Done with it: the connection goes back to the pool if the body was read whole."""
        self._conn.release()


class OpenAICompatClient:
    """Sends requests to OpenAI-compatible engines, one connection pool per replica.

    ``sync`` follows catalog changes: a replica whose address and pool settings
    are unchanged keeps its pool (and warm connections); new replicas get new
    pools; pools of removed or changed replicas are closed (requests already
    on them finish; their connections are then dropped). Every provider key it
    is given joins ``redactor`` for good: a request sent before a rotation may
    still come back echoing the old key.

    ``max_response_bytes`` bounds a non-streamed answer (``Settings``): past it
    the connection is dropped and the caller gets a 502, so one engine's
    runaway answer cannot take the gateway's memory.
    """

    def __init__(self, deployments: Any, *, max_response_bytes: int) -> None:
        self._deployments: list[Deployment] = list(deployments)
        self._pools: dict[str, Pool] = {}
        self._heads: dict[tuple[str, str], bytes] = {}
        self._max_response_bytes = max_response_bytes
        #: Every exchange's first-byte deadline, on one timer (``engines.deadlines``).
        self._deadlines = Deadlines()
        self._error_body_bytes = min(max_response_bytes, upstream_errors.ERROR_BODY_BYTES)
        self.redactor = Redactor()

    async def start(self) -> None:
        """Create the pools and pre-build every request head (no I/O yet)."""
        self.sync(self._deployments)

    def sync(self, deployments: Any) -> None:
        pools: dict[str, Pool] = {}
        heads: dict[tuple[str, str], bytes] = {}
        keys: list[str] = []
        for d in deployments:
            auth = f"Authorization: Bearer {d.api_key}\r\n" if d.api_key else ""
            if d.api_key:
                keys.append(d.api_key)
            for replica in d.replicas:
                pool = self._pools.get(replica.id)
                if pool is None or (pool.base_url, pool.max_connections, pool.connect_timeout_s) \
                        != (replica.base_url, d.max_connections, d.timeouts.connect_s):
                    pool = Pool(replica.base_url, max_connections=d.max_connections,
                                connect_timeout_s=d.timeouts.connect_s)
                pools[replica.id] = pool
                root = urlsplit(replica.base_url).path.rstrip("/")
                for endpoint in (*_ENDPOINTS, *LORA_ACTIONS):
                    path = f"{root}/{endpoint}"
                    heads[replica.id, endpoint] = (
                        f"POST {path} HTTP/1.1\r\nHost: {pool.host_header}\r\n"
                        f"User-Agent: inferenceops/{__version__}\r\n"
                        "Content-Type: application/json\r\nAccept: */*\r\n"
                        f"Accept-Encoding: identity\r\n{auth}Content-Length: ").encode("latin-1")
        # Known before any request can carry them.
        self.redactor = self.redactor.with_secrets(keys)
        retired = [pool for rid, pool in self._pools.items() if pools.get(rid) is not pool]
        self._pools, self._heads = pools, heads
        for pool in retired:
            pool.close()

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools = {}

    async def _exchange(self, replica: Replica, endpoint: str, body: bytes, *,
                        idempotent: bool = False) -> Connection:
        pool = self._pools.get(replica.id)
        if pool is None:  # the catalog dropped this replica while the request was being admitted
            raise ConnectFailed(f"replica {replica.id} was removed", reason="removed from the catalog")
        data = b"%s%d\r\n\r\n%s" % (self._heads[replica.id, endpoint], len(body), body)
        return await pool.request(data, idempotent=idempotent)

    async def complete(self, deployment: Deployment, replica: Replica, endpoint: str,
                       body: bytes, *, idempotent: bool = False) -> UpstreamAnswer:
        """POST ``body`` and read the whole answer (non-streaming requests).

        One deadline, ``first_byte_s`` (capped by ``total_s``), covers both: an
        engine sends a non-streamed answer only once it is complete. Anything
        but a 2xx whose body is a JSON object of at most ``max_response_bytes``
        is raised as a typed error. A connection lost after the request was
        written is ``UpstreamUnavailable`` (never retried: the engine may have
        the request), unless ``idempotent`` (``engines.http1.Pool.request``).
        """
        timeouts = deployment.timeouts
        name = deployment.name
        limit = min(timeouts.first_byte_s, timeouts.total_s)
        try:
            with self._deadlines.at(asyncio.get_running_loop().time() + limit):
                conn = await self._exchange(replica, endpoint, body, idempotent=idempotent)
                status, content_type = conn.status, conn.content_type
                await self._refuse_failures(conn, name)
                payload, whole = await conn.read_body(self._max_response_bytes)
        except (TimeoutError, HTTPClientError) as exc:
            raise _translate(exc, deployment) from None
        if not whole:
            raise upstream_errors.too_large(status, self._max_response_bytes, name)
        doc = upstream_errors.json_object(payload)
        if doc is None:
            raise upstream_errors.not_json(status, payload, content_type, name, self.redactor)
        return UpstreamAnswer(status, content_type, payload, doc)

    async def open_stream(self, deployment: Deployment, replica: Replica, endpoint: str,
                          body: bytes) -> UpstreamResponse:
        """POST ``body``; returns once the status and headers are in, body unread.

        A 3xx/4xx/5xx is raised as a typed error (an error's body read, at most
        ``ERROR_BODY_BYTES``). A refused connection raises
        ``UpstreamConnectFailed`` (retryable): the request provably never
        reached the engine.
        """
        loop = asyncio.get_running_loop()
        timeouts = deployment.timeouts
        now = loop.time()
        deadline = now + timeouts.total_s
        try:
            with self._deadlines.at(min(deadline, now + timeouts.first_byte_s)):
                conn = await self._exchange(replica, endpoint, body)
                await self._refuse_failures(conn, deployment.name)
        except (TimeoutError, HTTPClientError) as exc:
            raise _translate(exc, deployment) from None
        return UpstreamResponse(conn, deployment, replica, deadline)

    async def lora(self, deployment: Deployment, replica: Replica, action: str, body: bytes,
                   timeout_s: float) -> tuple[int, bytes]:
        """POST ``body`` to the replica's ``/v1/<action>`` (``LORA_ACTIONS``): its status and
        body (at most ``ERROR_BODY_BYTES``), whatever the status. Both actions may be sent
        again (loading what is loaded, or unloading what is gone, is refused harmlessly), so a
        stale keep-alive connection is retried. A transport failure or ``timeout_s`` passing
        raises the typed upstream error."""
        try:
            async with asyncio.timeout(timeout_s):
                conn = await self._exchange(replica, action, body, idempotent=True)
                status = conn.status
                payload, _ = await conn.read_body(self._error_body_bytes)
        except (TimeoutError, HTTPClientError) as exc:
            raise _translate(exc, deployment) from None
        return status, payload

    async def _refuse_failures(self, conn: Connection, deployment: str) -> None:
        """Raise the typed error for an answer that is not a success; the connection then
        goes back (error read whole) or is dropped. Runs under the caller's deadline."""
        status = conn.status
        if status < 300:
            return
        if status < 400:  # a redirect: its body is of no use
            conn.abort()
            raise upstream_errors.redirected(status, deployment)
        retry_after = conn.retry_after
        payload, whole = await conn.read_body(self._error_body_bytes)
        raise upstream_errors.http_error(status, payload, complete=whole, deployment=deployment,
                                         retry_after=retry_after, redactor=self.redactor)


def _translate(exc: BaseException, deployment: Deployment) -> UpstreamError:
    """Transport failures, in our terms: the deployment named, its replicas' addresses never."""
    name = deployment.name
    timeouts = deployment.timeouts
    if isinstance(exc, ConnectFailed):
        return UpstreamConnectFailed(f"deployment {name!r} is unreachable ({exc.reason})",
                                     extra={"deployment": name}, detail={"cause": exc.reason})
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"deployment {name!r} did not answer within "
                               f"{min(timeouts.first_byte_s, timeouts.total_s):g}s",
                               extra={"deployment": name}, detail={"timeout": "first_byte_s"})
    return UpstreamUnavailable(f"deployment {name!r} failed: {_cause(exc)}",
                               extra={"deployment": name}, detail={"cause": str(exc)})


def _cause(exc: BaseException) -> str:
    """A fixed description of a transport failure: never the peer's bytes or address."""
    if isinstance(exc, ConnectionLost):
        return "the engine closed the connection"
    return "the engine's answer was not valid HTTP/1.1"
