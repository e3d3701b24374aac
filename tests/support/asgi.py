"""A minimal in-process ASGI driver: one request in, the whole response out.

Used by unit tests to run the gateway application without a server, so a
test sees exactly the ASGI messages the app sends.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def json(self) -> Any:
        return orjson.loads(self.body)


async def request(app: Any, method: str, path: str, *, body: bytes = b"",
                  headers: dict[str, str] | None = None, client: str = "127.0.0.1",
                  body_parts: list[bytes] | None = None, disconnect_after: int | None = None,
                  timeout: float = 10.0, futures: bool = False) -> Response:
    """Send one request; ``disconnect_after`` makes the client vanish after N body chunks;
    ``futures``: ``receive`` returns a future that completes later, as granian's does."""
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if body and not any(k == b"content-length" for k, _ in raw_headers):
        raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": raw_headers, "client": (client, 50000), "server": ("127.0.0.1", 8080),
             "scheme": "http", "root_path": ""}
    parts = list(body_parts) if body_parts is not None else [body]
    response = Response()
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if parts:
            chunk = parts.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(parts)}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if gone.is_set():
            raise OSError("client disconnected")
        if message["type"] == "http.response.start":
            response.status = message["status"]
            response.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            if message.get("body"):
                response.chunks.append(message["body"])
            if disconnect_after is not None and len(response.chunks) >= disconnect_after:
                gone.set()
            if not message.get("more_body", False):
                gone.set()

    def receive_future() -> asyncio.Future[dict[str, Any]]:
        return asyncio.ensure_future(receive())

    await asyncio.wait_for(app(scope, receive_future if futures else receive, send), timeout)
    return response
