"""A minimal in-process RSGI driver: what granian hands an RSGI app, without a server.

It behaves as granian 2 does where the gateway depends on it (checked against a
real granian in ``tests/integration``, which serves the gateway over RSGI): the
body comes whole from ``proto()`` or piece by piece from ``async for``; header
values are text and ``get`` returns the first; a stream's transport raises
granian's own ``ProtocolClosed`` once the client left; and a stream ends when its
transport is released (``Response.ended_streams`` counts those).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from granian.rsgi import ProtocolClosed

from tests.support.asgi import Response


@dataclass
class RsgiResponse(Response):
    #: Streams whose transport the app released (granian then ends the response).
    ended_streams: int = 0
    body_calls: list[str] = field(default_factory=list)  # "whole" / "iter", in order


class FakeHeaders:
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get(self, key: str, default: Any = None) -> Any:
        return next((v for k, v in self._pairs if k == key), default)

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def keys(self) -> list[str]:
        return [k for k, _ in self._pairs]

    def __contains__(self, key: str) -> bool:
        return any(k == key for k, _ in self._pairs)


@dataclass
class FakeScope:
    method: str
    path: str
    headers: FakeHeaders
    client: str
    query_string: str = ""
    http_version: str = "1.1"
    scheme: str = "http"
    server: str = "127.0.0.1:8080"
    proto: str = "http"
    rsgi_version: str = "1.5"


class FakeTransport:
    def __init__(self, proto: FakeProtocol) -> None:
        self._proto = proto

    async def send_bytes(self, data: bytes) -> None:
        proto = self._proto
        if proto.gone.is_set():
            raise ProtocolClosed("RSGI transport is closed")
        await asyncio.sleep(0)
        if data:
            proto.response.chunks.append(data)
        if proto.disconnect_after is not None and \
                len(proto.response.chunks) >= proto.disconnect_after:
            proto.gone.set()

    async def send_str(self, data: str) -> None:
        await self.send_bytes(data.encode())


class FakeProtocol:
    def __init__(self, parts: list[bytes], disconnect_after: int | None) -> None:
        self.parts = parts
        self.disconnect_after = disconnect_after
        self.gone = asyncio.Event()
        self.response = RsgiResponse()
        self._responded = False

    def __call__(self) -> asyncio.Future[bytes]:
        self.response.body_calls.append("whole")

        async def whole() -> bytes:
            await asyncio.sleep(0)
            return b"".join(self.parts)
        return asyncio.ensure_future(whole())

    def __aiter__(self) -> AsyncIterator[bytes]:
        self.response.body_calls.append("iter")

        async def pieces() -> AsyncIterator[bytes]:
            for part in self.parts:
                await asyncio.sleep(0)
                if part:
                    yield part
        return pieces()

    def client_disconnect(self) -> asyncio.Future[bool]:
        async def wait() -> bool:
            await self.gone.wait()
            return True
        return asyncio.ensure_future(wait())

    def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        assert not self._responded, "an RSGI request answered twice"
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers), headers
        self._responded = True
        self.response.status = status
        self.response.headers = dict(headers)

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self._start(status, headers)
        self.response.chunks.append(body)
        self.gone.set()

    def response_str(self, status: int, headers: list[tuple[str, str]], body: str) -> None:
        self.response_bytes(status, headers, body.encode())

    def response_empty(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.response_bytes(status, headers, b"")

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> FakeTransport:
        self._start(status, headers)
        transport = FakeTransport(self)
        weakref.finalize(transport, self._ended)
        return transport

    def _ended(self) -> None:
        self.response.ended_streams += 1
        self.gone.set()


async def rsgi_request(app: Any, method: str, path: str, *, body: bytes = b"",
                       headers: dict[str, str] | None = None, client: str = "127.0.0.1",
                       body_parts: list[bytes] | None = None,
                       disconnect_after: int | None = None, query_string: str = "",
                       timeout: float = 10.0) -> RsgiResponse:
    """Send one request through ``app.__rsgi__``; ``disconnect_after`` makes the client vanish
    after N response chunks. A body given as ``body_parts`` comes without a Content-Length
    unless the headers name one (chunked framing)."""
    pairs = [(k.lower(), v) for k, v in (headers or {}).items()]
    if body and not any(k == "content-length" for k, _ in pairs):
        pairs.append(("content-length", str(len(body))))
    scope = FakeScope(method, path, FakeHeaders(pairs), f"{client}:50000", query_string)
    proto = FakeProtocol(list(body_parts) if body_parts is not None else [body], disconnect_after)
    await asyncio.wait_for(app.__rsgi__(scope, proto), timeout)
    return proto.response
