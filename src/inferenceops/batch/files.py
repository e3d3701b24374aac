"""The files folder: where the Files API keeps each file's bytes, written and read in pieces.

Layout under the configured folder (``Settings.resolved_files_dir``)::

    <root>/<file id>.jsonl      a stored file, complete
    <root>/.partial/<random>    an upload still arriving (or one a crash interrupted)

An upload is written to ``.partial/`` and renamed into place only once it is whole and
flushed to disk (``fsync`` of the file, rename, ``fsync`` of the folder): a stored name
always holds a whole file, and a failed, refused or abandoned upload leaves nothing
behind but, after a crash, a ``.partial`` file that ``sweep_partial`` removes.

Blocking file calls run in a thread (``asyncio.to_thread``) so the event loop keeps
serving; writes are gathered into ``WRITE_BUFFER`` pieces so a 200 MB upload is ~200
thread hops, not one per network chunk. Nothing here knows of owners or the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import BinaryIO

PARTIAL = ".partial"
WRITE_BUFFER = 1024 * 1024
READ_CHUNK = 256 * 1024


class FileStore:
    """The files folder ``root`` (created on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.partial = root / PARTIAL

    def path_of(self, name: str) -> Path:
        """Where the stored file ``name`` lives; a name is never a path of its own."""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"not a stored file's name: {name!r}")
        return self.root / name

    async def begin(self) -> PartialFile:
        """A new upload in ``.partial/``."""
        return await asyncio.to_thread(self._open_partial)

    def _open_partial(self) -> PartialFile:
        self.partial.mkdir(parents=True, exist_ok=True)
        path = self.partial / secrets.token_hex(12)
        return PartialFile(self, path, path.open("xb"))

    async def read(self, name: str, chunk: int = READ_CHUNK) -> AsyncGenerator[bytes, None]:
        """The stored file ``name``, piece by piece (opened before the first piece)."""
        handle = await asyncio.to_thread(self.path_of(name).open, "rb")
        return _pieces(handle, chunk)

    async def remove(self, name: str) -> bool:
        """Delete the stored file ``name``; False if it was not there."""
        path = self.path_of(name)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        return True

    def sweep_partial(self, older_than_s: float) -> int:
        """Remove uploads a crash left in ``.partial/`` (older than ``older_than_s``); how many."""
        removed = 0
        cutoff = time.time() - older_than_s
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.partial):
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_file() and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        return removed


async def _pieces(handle: BinaryIO, chunk: int) -> AsyncGenerator[bytes, None]:
    try:
        while piece := await asyncio.to_thread(handle.read, chunk):
            yield piece
    finally:
        handle.close()


class PartialFile:
    """One upload being written: ``write`` pieces, then ``commit`` (into place) or ``discard``."""

    def __init__(self, store: FileStore, path: Path, handle: BinaryIO) -> None:
        self._store = store
        self.path = path
        self._handle = handle
        self._buffer = bytearray()
        self.size = 0
        self._closed = False

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= WRITE_BUFFER:
            await self._flush()

    async def _flush(self) -> None:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            await asyncio.to_thread(self._handle.write, data)

    async def commit(self, name: str) -> Path:
        """Flush to disk and move into place as ``name`` (atomic); returns the stored path."""
        target = self._store.path_of(name)
        await self._flush()
        await asyncio.to_thread(self._finish, target)
        return target

    def _finish(self, target: Path) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._closed = True
        os.replace(self.path, target)
        _fsync_dir(target.parent)

    async def discard(self) -> None:
        """Forget the upload: close and delete it (safe to call more than once)."""
        self._buffer.clear()
        await asyncio.to_thread(self._remove)

    def _remove(self) -> None:
        if not self._closed:
            self._handle.close()
            self._closed = True
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
