"""The OpenAI-compatible dialect: vLLM, SGLang, llama.cpp server, Ollama, TGI, OpenAI.

Owns aiohttp for talking to engines: one pooled ``ClientSession`` per
deployment (keep-alive, bounded connections), requests sent as the original
bytes, responses handed back unparsed. Every aiohttp/timeout failure is
translated here into the typed errors of ``inferenceops.errors``; nothing
above this module sees an aiohttp exception. Knows nothing of teams or keys.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

import aiohttp
import orjson
from yarl import URL

from inferenceops.errors import (
    UpstreamClientError,
    UpstreamConnectFailed,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from inferenceops.platform import Deployment, Replica

_ENDPOINTS = ("chat/completions", "completions", "embeddings")
# The request never left this machine: safe to try another replica. (aiohttp's connect
# timeout is also a TimeoutError, so this is checked before the timeout case.)
_CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError,
                   ConnectionRefusedError, socket.gaierror)


class UpstreamResponse:
    """An upstream response whose headers arrived; the body is read on demand."""

    __slots__ = ("_resp", "_deadline", "_between", "_deployment", "status", "content_type")

    def __init__(self, resp: aiohttp.ClientResponse, deployment: Deployment, deadline: float) -> None:
        self._resp = resp
        self._deadline = deadline
        self._between = deployment.timeouts.between_chunks_s
        self._deployment = deployment.name
        self.status = resp.status
        self.content_type = resp.headers.get("Content-Type", "application/json")

    def _next_deadline(self) -> float:
        return min(self._deadline, asyncio.get_running_loop().time() + self._between)

    async def read(self) -> bytes:
        """The whole body (non-streaming responses); releases the connection."""
        try:
            async with asyncio.timeout_at(self._next_deadline()):
                return await self._resp.read()
        except TimeoutError:
            raise UpstreamTimeout(f"deployment {self._deployment!r} stopped sending its response",
                                  extra={"deployment": self._deployment}) from None
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"deployment {self._deployment!r} broke off its response: "
                                      f"{type(exc).__name__}",
                                      extra={"deployment": self._deployment}) from None
        finally:
            self._resp.release()

    async def next_chunk(self) -> bytes:
        """The next piece of a streamed body as it arrives; ``b""`` at the end."""
        try:
            async with asyncio.timeout_at(self._next_deadline()):
                return await self._resp.content.readany()
        except TimeoutError:
            self.close()
            raise UpstreamTimeout(f"deployment {self._deployment!r} sent nothing for "
                                  f"{self._between:g}s mid-stream",
                                  extra={"deployment": self._deployment}) from None
        except aiohttp.ClientError as exc:
            self.close()
            raise UpstreamUnavailable(f"deployment {self._deployment!r} broke off the stream: "
                                      f"{type(exc).__name__}",
                                      extra={"deployment": self._deployment}) from None

    def close(self) -> None:
        """Abandon the response (client went away, or we failed): drop the connection."""
        self._resp.close()

    def release(self) -> None:
        self._resp.release()


class OpenAICompatClient:
    """Sends requests to OpenAI-compatible engines, one connection pool per deployment."""

    def __init__(self, deployments: Iterable[Deployment]) -> None:
        self._deployments = {d.name: d for d in deployments}
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._urls: dict[tuple[str, str], URL] = {}

    async def start(self) -> None:
        """Create the pools; must run inside the serving event loop."""
        for d in self._deployments.values():
            connector = aiohttp.TCPConnector(limit=d.max_connections, limit_per_host=d.max_connections,
                                             keepalive_timeout=30, ttl_dns_cache=300)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=d.timeouts.connect_s)
            headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
            if d.api_key:
                headers["Authorization"] = f"Bearer {d.api_key}"
            # Fixed headers live on the session and URLs are parsed once: per-request work
            # in aiohttp is then little more than writing the bytes. No cookies: engines
            # have no business setting state on a shared client.
            self._sessions[d.name] = aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers=headers, auto_decompress=False,
                skip_auto_headers=("User-Agent",), raise_for_status=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            for replica in d.replicas:
                for endpoint in _ENDPOINTS:
                    self._urls[replica.id, endpoint] = URL(f"{replica.base_url}/{endpoint}")

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        await asyncio.gather(*(s.close() for s in sessions.values()), return_exceptions=True)

    async def complete(self, deployment: Deployment, replica: Replica, endpoint: str,
                       body: bytes) -> tuple[int, str, bytes]:
        """POST ``body`` and read the whole answer (non-streaming requests).

        One deadline, ``first_byte_s`` (capped by ``total_s``), covers both: an
        engine sends a non-streamed answer only once it is complete. Returns
        (status, content type, body); a 4xx/5xx is raised as a typed error.
        """
        timeouts = deployment.timeouts
        try:
            async with asyncio.timeout(min(timeouts.first_byte_s, timeouts.total_s)):
                resp = await self._sessions[deployment.name].post(
                    self._urls[replica.id, endpoint], data=body)
                try:
                    payload = await resp.read()
                finally:
                    resp.release()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _translate(exc, deployment, replica) from exc
        if resp.status >= 400:
            raise _http_error(resp.status, payload, deployment.name)
        return resp.status, resp.headers.get("Content-Type", "application/json"), payload

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
                resp = await self._sessions[deployment.name].post(
                    self._urls[replica.id, endpoint], data=body)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _translate(exc, deployment, replica) from exc
        response = UpstreamResponse(resp, deployment, deadline)
        if resp.status >= 400:
            raise _http_error(resp.status, await response.read(), deployment.name)
        return response


def _translate(exc: BaseException, deployment: Deployment, replica: Replica) -> Exception:
    """aiohttp's and the socket layer's failures, in our terms."""
    name = deployment.name
    if isinstance(exc, _CONNECT_ERRORS):
        return UpstreamConnectFailed(f"deployment {name!r} is unreachable (replica {replica.id}: "
                                     "connection failed)", extra={"deployment": name})
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"deployment {name!r} did not answer within "
                               f"{deployment.timeouts.first_byte_s:g}s", extra={"deployment": name})
    return UpstreamUnavailable(f"deployment {name!r} failed: {type(exc).__name__}",
                               extra={"deployment": name})


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
