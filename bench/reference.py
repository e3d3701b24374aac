"""A minimal forwarding proxy — the floor the gateway's stack allows on this machine.

granian (raw ASGI, one worker) + one pooled upstream client + the request
bytes forwarded as they came: no authentication, parsing, routing, error
mapping or overhead header. The client is the gateway's own
(``inferenceops.engines.http1``, default) or aiohttp (``--client aiohttp``, the
"granian + raw ASGI + aiohttp" row of DESIGN.md's measured choices). The gap
between the gateway and this is what the gateway's own code costs; the gap
between this and the upstream is what the stack costs.

Run standalone: ``python -m bench.reference --port 18002 --upstream http://127.0.0.1:18001``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp

from inferenceops.engines.http1 import Pool

UPSTREAM_ENV = "BENCH_REFERENCE_UPSTREAM"
CLIENT_ENV = "BENCH_REFERENCE_CLIENT"
Message = MutableMapping[str, Any]
_HEALTH = b'{"status":"ok"}'
_UPSTREAM_HEADERS = {"Content-Type": "application/json", "Accept-Encoding": "identity"}


class ReferenceProxy:
    """ASGI3: GET → health; POST → the same path on the upstream, answer passed back."""

    def __init__(self, upstream: str, client: str = "http1") -> None:
        self.upstream = upstream.rstrip("/")
        self.client = client
        self.session: aiohttp.ClientSession | None = None
        self.pool: Pool | None = None
        self.head = b""

    async def _forward_http1(self, path: str, body: bytes, send: Callable[[Message],
                             Awaitable[None]]) -> None:
        assert self.pool is not None
        conn = await self.pool.request(b"POST %s HTTP/1.1\r\n%s%d\r\n\r\n%s" % (
            path.encode(), self.head, len(body), body))
        if conn.content_type.startswith(b"text/event-stream"):
            await send({"type": "http.response.start", "status": conn.status,
                        "headers": [(b"content-type", conn.content_type)]})
            while chunk := await conn.next_chunk():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            status, ctype, payload = conn.status, conn.content_type, await conn.read()
            await _respond(send, status, ctype, payload)
        conn.release()

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["method"] != "POST":
            await _respond(send, 200, b"application/json", _HEALTH)
            return
        message = await receive()
        body: bytes = message.get("body", b"")
        while message.get("more_body", False):
            message = await receive()
            body += message.get("body", b"")
        if self.pool is not None:
            await self._forward_http1(scope["path"], body, send)
            return
        assert self.session is not None
        async with self.session.post(self.upstream + scope["path"], data=body,
                                     headers=_UPSTREAM_HEADERS) as resp:
            ctype = resp.headers.get("Content-Type", "application/json").encode()
            if ctype.startswith(b"text/event-stream"):
                await send({"type": "http.response.start", "status": resp.status,
                            "headers": [(b"content-type", ctype)]})
                while chunk := await resp.content.readany():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            await _respond(send, resp.status, ctype, await resp.read())

    async def _lifespan(self, receive: Callable[[], Awaitable[Message]],
                        send: Callable[[Message], Awaitable[None]]) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup" and self.client == "http1":
                self.pool = Pool(self.upstream, max_connections=256, connect_timeout_s=5)
                self.head = (f"Host: {self.pool.host_header}\r\nContent-Type: application/json\r\n"
                             "Content-Length: ").encode()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
                    auto_decompress=False, skip_auto_headers=("User-Agent",))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                if self.pool is not None:
                    self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _respond(send: Callable[[Message], Awaitable[None]], status: int, ctype: bytes,
                   body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def create_app() -> ReferenceProxy:
    """granian factory: each worker builds its proxy (and, at startup, its pool)."""
    return ReferenceProxy(os.environ[UPSTREAM_ENV], os.environ.get(CLIENT_ENV, "http1"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18002)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--upstream", required=True, help="upstream base, e.g. http://127.0.0.1:18001")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--client", choices=("http1", "aiohttp"), default="http1")
    args = parser.parse_args(argv)
    os.environ[UPSTREAM_ENV] = args.upstream
    os.environ[CLIENT_ENV] = args.client

    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    Server("bench.reference:create_app", address=args.host, port=args.port, workers=args.workers,
           interface=Interfaces.ASGI, factory=True, loop=Loops.auto, backlog=2048,
           log_level=LogLevels.warning, log_access=False).serve()


if __name__ == "__main__":
    main()
