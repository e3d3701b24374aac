"""Where a pipeline's answer goes: the one seam between the stages and a transport.

The forward stage writes the answer through a ``ResponseSink``: a whole
answer with ``complete``, a stream with ``start`` → ``write``… → ``end``. The
HTTP edge implements it over ASGI ``send``/``receive`` (``gateway.asgi_sink``);
``CollectingSink`` keeps the answer in memory for in-process callers (a batch
line, a test). A sink raises ``ClientGone`` from ``write`` once nobody is
listening, and ``gone`` resolves when the caller leaves mid-stream, so the
engine's work can be stopped.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from inferenceops.pipeline.facts import RequestFacts


class ClientGone(Exception):
    """The caller left: nothing more can be sent."""


class ResponseSink(Protocol):
    @property
    def started(self) -> bool:
        """True once a status has been sent: from then on a failure is told in-band."""
        ...

    async def complete(self, facts: RequestFacts, status: int, content_type: bytes,
                       body: bytes) -> None:
        """A whole answer, status and body at once."""
        ...

    async def start(self, facts: RequestFacts, status: int, content_type: bytes) -> None:
        """A stream's status and headers; ``write`` follows."""
        ...

    async def write(self, chunk: bytes) -> None:
        """A piece of a stream; ``ClientGone`` once the caller is no longer there."""
        ...

    async def end(self) -> None:
        """The stream is over (never raises)."""
        ...

    def gone(self) -> asyncio.Future[None] | None:
        """Resolves when the caller leaves mid-stream (None: it cannot leave)."""
        ...


class CollectingSink:
    """Keeps the answer in memory: for in-process callers that want status, headers and body."""

    __slots__ = ("status", "content_type", "headers", "chunks", "ended", "_started")

    def __init__(self) -> None:
        self.status: int | None = None
        self.content_type: bytes | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.ended = False
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    async def complete(self, facts: RequestFacts, status: int, content_type: bytes,
                       body: bytes) -> None:
        await self.start(facts, status, content_type)
        self.chunks.append(body)
        self.ended = True

    async def start(self, facts: RequestFacts, status: int, content_type: bytes) -> None:
        self.status, self.content_type, self._started = status, content_type, True
        self.headers = list(facts.answer_headers())

    async def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    async def end(self) -> None:
        self.ended = True

    def gone(self) -> asyncio.Future[None] | None:
        return None
