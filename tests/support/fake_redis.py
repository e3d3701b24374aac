"""A tiny scripted RESP server on 127.0.0.1 (or a unix socket, or TLS), for the Redis client's tests.

It records every command and answers each with ``answer(command)``: the bytes of
a reply, ``None`` to never answer, ``Hangup`` to write some bytes and close the
connection, ``Reset`` to tear it down with a TCP reset.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hiredis


@dataclass
class Hangup:
    """Write these bytes (maybe half a reply), then close the connection."""

    data: bytes = b""


@dataclass
class Reset:
    """Write these bytes, then drop the connection with a TCP reset (RST, not FIN)."""

    data: bytes = b""


Answer = bytes | Hangup | Reset | None  # None: never answer


def pong(command: list[bytes]) -> Answer:
    if command[0] == b"ECHO":
        return b"$%d\r\n%b\r\n" % (len(command[1]), command[1])
    return b"+OK\r\n" if command[0] in (b"AUTH", b"SELECT") else b"+PONG\r\n"


class FakeRedis:
    """A RESP server that records every command and answers with ``answer(command)``."""

    def __init__(self, answer: Callable[[list[bytes]], Answer] = pong) -> None:
        self.answer = answer
        self.commands: list[list[bytes]] = []
        self.connections = 0
        self.disconnected = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self, *, unix_path: Path | None = None, tls: ssl.SSLContext | None = None,
                    host: str = "127.0.0.1") -> str:
        if unix_path is not None:
            self._server = await asyncio.start_unix_server(self._serve, unix_path)
            return f"unix://{unix_path}"
        self._server = await asyncio.start_server(self._serve, host, 0, ssl=tls)
        port = self._server.sockets[0].getsockname()[1]
        return f"{'rediss' if tls else 'redis'}://{host}:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self._writers.append(writer)
        parser = hiredis.Reader()
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    self.commands.append(command)
                    answer = self.answer(command)
                    if isinstance(answer, Hangup):
                        writer.write(answer.data)
                        return
                    if isinstance(answer, Reset):
                        writer.write(answer.data)
                        await writer.drain()
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        writer.transport.abort()
                        return
                    if answer is not None:
                        writer.write(answer)
        except ConnectionError:
            pass
        finally:
            writer.close()
            self.disconnected.set()

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.gather(*self._tasks, return_exceptions=True)
