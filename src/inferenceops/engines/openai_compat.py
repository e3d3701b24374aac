"""The OpenAI-compatible dialect: vLLM, SGLang, llama.cpp server, Ollama, TGI, OpenAI.

Sends the original request bytes to a replica over a pooled keep-alive
connection (``engines.http1``, one pool per replica) and hands the response
back unparsed. Every transport and timeout failure is translated here into
the typed errors of ``inferenceops.errors``; nothing above this module sees a
socket error. Knows nothing of teams or keys.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

import orjson

from inferenceops import __version__
from inferenceops.engines.http1 import (
    ConnectFailed,
    Connection,
    HTTPClientError,
    Pool,
)
from inferenceops.errors import (
    UpstreamClientError,
    UpstreamConnectFailed,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from inferenceops.platform import Deployment, Replica

_ENDPOINTS = ("chat/completions", "completions", "embeddings")


class UpstreamResponse:
    """A streamed upstream response whose head arrived; the body is read on demand."""

    __slots__ = ("_conn", "_deadline", "_between", "_deployment", "status", "content_type")

    def __init__(self, conn: Connection, deployment: Deployment, deadline: float) -> None:
        self._conn = conn
        self._deadline = deadline
        self._between = deployment.timeouts.between_chunks_s
        self._deployment = deployment.name
        self.status = conn.status
        self.content_type = conn.content_type

    async def next_chunk(self) -> bytes:
        """The next piece of the body as it arrives; ``b""`` at the end."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(min(self._deadline, loop.time() + self._between)):
                return await self._conn.next_chunk()
        except TimeoutError:
            self.close()
            raise UpstreamTimeout(f"deployment {self._deployment!r} sent nothing for "
                                  f"{self._between:g}s mid-stream",
                                  extra={"deployment": self._deployment}) from None
        except HTTPClientError as exc:
            self.close()
            raise UpstreamUnavailable(f"deployment {self._deployment!r} broke off the stream: "
                                      f"{exc}", extra={"deployment": self._deployment}) from None

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
    on them finish; their connections are then dropped).
    """

    def __init__(self, deployments: Any) -> None:
        self._deployments: list[Deployment] = list(deployments)
        self._pools: dict[str, Pool] = {}
        self._heads: dict[tuple[str, str], bytes] = {}

    async def start(self) -> None:
        """Create the pools and pre-build every request head (no I/O yet)."""
        self.sync(self._deployments)

    def sync(self, deployments: Any) -> None:
        pools: dict[str, Pool] = {}
        heads: dict[tuple[str, str], bytes] = {}
        for d in deployments:
            auth = f"Authorization: Bearer {d.api_key}\r\n" if d.api_key else ""
            for replica in d.replicas:
                pool = self._pools.get(replica.id)
                if pool is None or (pool.base_url, pool.max_connections, pool.connect_timeout_s) \
                        != (replica.base_url, d.max_connections, d.timeouts.connect_s):
                    pool = Pool(replica.base_url, max_connections=d.max_connections,
                                connect_timeout_s=d.timeouts.connect_s)
                pools[replica.id] = pool
                root = urlsplit(replica.base_url).path.rstrip("/")
                for endpoint in _ENDPOINTS:
                    path = f"{root}/{endpoint}"
                    heads[replica.id, endpoint] = (
                        f"POST {path} HTTP/1.1\r\nHost: {pool.host_header}\r\n"
                        f"User-Agent: inferenceops/{__version__}\r\n"
                        "Content-Type: application/json\r\nAccept: */*\r\n"
                        f"Accept-Encoding: identity\r\n{auth}Content-Length: ").encode("latin-1")
        retired = [pool for rid, pool in self._pools.items() if pools.get(rid) is not pool]
        self._pools, self._heads = pools, heads
        for pool in retired:
            pool.close()

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools = {}

    async def _exchange(self, replica: Replica, endpoint: str, body: bytes) -> Connection:
        pool = self._pools.get(replica.id)
        if pool is None:  # the catalog dropped this replica while the request was being admitted
            raise ConnectFailed(f"replica {replica.id} was removed", reason="removed from the catalog")
        data = b"%s%d\r\n\r\n%s" % (self._heads[replica.id, endpoint], len(body), body)
        return await pool.request(data)

    async def complete(self, deployment: Deployment, replica: Replica, endpoint: str,
                       body: bytes) -> tuple[int, bytes, bytes]:
        """POST ``body`` and read the whole answer (non-streaming requests).

        One deadline, ``first_byte_s`` (capped by ``total_s``), covers both: an
        engine sends a non-streamed answer only once it is complete. Returns
        (status, content type, body); a 4xx/5xx is raised as a typed error.
        """
        timeouts = deployment.timeouts
        try:
            async with asyncio.timeout(min(timeouts.first_byte_s, timeouts.total_s)):
                conn = await self._exchange(replica, endpoint, body)
                try:
                    payload = await conn.read()
                except BaseException:
                    conn.abort()
                    raise
        except (TimeoutError, HTTPClientError) as exc:
            raise _translate(exc, deployment, replica) from None
        status, content_type = conn.status, conn.content_type
        conn.release()
        if status >= 400:
            raise _http_error(status, payload, deployment.name)
        return status, content_type, payload

    async def open_stream(self, deployment: Deployment, replica: Replica, endpoint: str,
                          body: bytes) -> UpstreamResponse:
        """POST ``body``; returns once the status and headers are in, body unread.

        A 4xx/5xx is raised as a typed error (its body read and kept). A refused
        connection raises ``UpstreamConnectFailed`` (retryable): the request
        provably never reached the engine.
        """
        loop = asyncio.get_running_loop()
        timeouts = deployment.timeouts
        now = loop.time()
        deadline = now + timeouts.total_s
        try:
            async with asyncio.timeout_at(min(deadline, now + timeouts.first_byte_s)):
                conn = await self._exchange(replica, endpoint, body)
                if conn.status >= 400:  # an error answer: read it whole, under the same deadline
                    status = conn.status
                    try:
                        payload = await conn.read()
                    except BaseException:
                        conn.abort()
                        raise
                    conn.release()
                    raise _http_error(status, payload, deployment.name)
        except (TimeoutError, HTTPClientError) as exc:
            raise _translate(exc, deployment, replica) from None
        return UpstreamResponse(conn, deployment, deadline)


def _translate(exc: BaseException, deployment: Deployment, replica: Replica) -> Exception:
    """Transport failures, in our terms."""
    name = deployment.name
    if isinstance(exc, ConnectFailed):
        return UpstreamConnectFailed(f"deployment {name!r} is unreachable (replica {replica.id}: "
                                     f"{exc.reason})", extra={"deployment": name})
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"deployment {name!r} did not answer within "
                               f"{deployment.timeouts.first_byte_s:g}s", extra={"deployment": name})
    return UpstreamUnavailable(f"deployment {name!r} failed: {exc}", extra={"deployment": name})


def _http_error(status: int, body: bytes, deployment: str) -> Exception:
    """Map an upstream error response to our tree, keeping the upstream's own words."""
    parsed: Any = None
    with suppress(orjson.JSONDecodeError):
        parsed = orjson.loads(body)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = error["message"]
    elif isinstance(error, str):
        message = error
    elif isinstance(parsed, dict) and isinstance(parsed.get("detail"), str):
        message = parsed["detail"]
    else:
        message = body[:500].decode("utf-8", "replace").strip() or f"HTTP {status}"
    if 400 <= status < 500:
        openai_shaped = isinstance(error, dict) and isinstance(error.get("message"), str)
        return UpstreamClientError(message, status=status,
                                   body=parsed if openai_shaped else None,
                                   extra={"deployment": deployment})
    return UpstreamServerError(f"deployment {deployment!r} failed with HTTP {status}",
                               extra={"deployment": deployment,
                                      "upstream": {"status": status, "message": message}})
