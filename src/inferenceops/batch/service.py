"""The Files API's operations: upload, list, retrieve, read and delete, always for one owner.

Ties the three parts together: the form reader (``batch.upload``), the files folder
(``batch.files``) and the rows (``store.repo.files``). Who may see a file is decided in
one place, ``owner_of``: the key's team, or for a key without a team its principal;
every row query filters by it, so another team's file is "not found" (404), never
"forbidden" (a 403 would confirm that the id exists).

An upload's order makes a crash safe: the bytes are complete and flushed on disk under
their final name before the row is written; if writing the row fails the file is
removed again. A delete of a file an unfinished batch reads is refused (409
``file_in_use``). A delete removes the row first (the file is gone for every caller at
once), then the bytes.

Not the hot path: this reads and writes the store (its own small pool, opened on first
use), and a store that cannot answer is a 503 ``files_unavailable``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.batch.files import FileStore
from inferenceops.batch.store_access import StoreAccess
from inferenceops.batch.upload import FileLimits, receive_upload
from inferenceops.errors import InvalidRequest, NotFound
from inferenceops.platform import ApiKey
from inferenceops.store.ids import FILE, new_sortable_id
from inferenceops.store.records import FileOwner, FileRecord
from inferenceops.store.repo import batches as batches_repo
from inferenceops.store.repo import files as repo
from inferenceops.store.repo.files import Order

log = logging.getLogger("inferenceops.batch")

T = TypeVar("T")
#: Uploads a crash left half-written are removed once they are this old (an upload in
#: progress keeps touching its file, so an hour without a write means nobody is writing).
PARTIAL_MAX_AGE_S = 3600.0
MAX_ID_CHARS = 64


def owner_of(key: ApiKey) -> FileOwner:
    """Whose files ``key`` sees: its team's; a key without a team, its own principal's."""
    return FileOwner(key.team_id, key.principal.id)


def stored_name(file_id: str) -> str:
    return f"{file_id}.jsonl"


class FilesService(StoreAccess):
    """The Files API over the store at ``url`` and the folder of ``files`` (see the module doc)."""

    name = "files"

    def __init__(self, url: str, files: FileStore, limits: FileLimits, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 expire_after_s: int = 0) -> None:
        super().__init__(url, "files")
        self.files = files
        self.limits = limits
        self._clock = clock
        self._expire_after_s = expire_after_s  # for an upload that sets none; 0: never

    async def upload(self, key: ApiKey, boundary: bytes, chunks: AsyncIterator[bytes]) -> FileRecord:
        received = await receive_upload(chunks, boundary, self.files, self.limits)
        created = self._clock()
        file_id = new_sortable_id(FILE, created, sep="-")
        name = stored_name(file_id)
        try:
            await received.partial.commit(name)
        except BaseException:
            await received.partial.discard()
            raise
        owner = owner_of(key)
        created = created.replace(microsecond=0)
        seconds = received.expires_after_s or self._expire_after_s
        expires = created + timedelta(seconds=seconds) if seconds else None
        record = FileRecord(file_id, owner.team_id, owner.principal_id, key.id, received.purpose,
                            received.filename, received.partial.size, received.line_count,
                            "processed", name, created, expires)
        try:
            return await self._run(True, lambda s: repo.add_file(s, record))
        except BaseException:
            await self.files.remove(name)
            raise

    async def list(self, key: ApiKey, *, purpose: str | None, after: str | None, limit: int,
                   order: Order) -> tuple[tuple[FileRecord, ...], bool]:
        return await self._run(False, lambda s: repo.list_files(
            s, owner_of(key), purpose=purpose, after=after, limit=limit, order=order,
            now=self._clock()))

    async def get(self, key: ApiKey, file_id: str) -> FileRecord:
        if not plausible_id(file_id):
            raise _no_such_file(file_id)
        found = await self._run(False, lambda s: repo.get_file(s, file_id, owner_of(key),
                                                               now=self._clock()))
        if found is None:
            raise _no_such_file(file_id)
        return found

    async def content(self, key: ApiKey, file_id: str) -> tuple[FileRecord, AsyncGenerator[bytes, None]]:
        """The file's record and its bytes (opened now, so a later delete cannot cut them)."""
        found = await self.get(key, file_id)
        try:
            return found, await self.files.read(found.path)
        except FileNotFoundError:
            log.error("files: %s has a row but no bytes at %s", file_id, found.path)
            raise _no_such_file(file_id) from None

    async def delete(self, key: ApiKey, file_id: str) -> FileRecord:
        if not plausible_id(file_id):
            raise _no_such_file(file_id)
        gone = await self._run(True, lambda s: _delete_unused(s, file_id, owner_of(key)))
        if gone is None:
            raise _no_such_file(file_id)
        if not await self.files.remove(gone.path):
            log.warning("files: %s was deleted but its bytes at %s were already gone",
                        file_id, gone.path)
        return gone


async def _delete_unused(session: AsyncSession, file_id: str, owner: FileOwner) -> FileRecord | None:
    """Delete the row, unless a batch still running reads the file (409: its lines are read
    from the file as they run). Another owner's file is not found before it is "in use"."""
    if await repo.get_file(session, file_id, owner) is None:
        return None
    if await batches_repo.input_in_use(session, file_id):
        raise InvalidRequest(f"File {file_id} is the input of a batch that has not finished; "
                             "cancel the batch or wait for it to end.", status=409,
                             code="file_in_use", param="file_id")
    return await repo.delete_file(session, file_id, owner)


def plausible_id(text: str) -> bool:
    """Could be a file id: short printable ASCII. Anything else names no file (and a NUL
    character, say, would be the database's error rather than a clean 404 or 400)."""
    return 0 < len(text) <= MAX_ID_CHARS and text.isascii() and text.isprintable()


def _no_such_file(file_id: str) -> NotFound:
    shown = file_id[:MAX_ID_CHARS] if plausible_id(file_id[:MAX_ID_CHARS]) else "(not an id)"
    return NotFound(f"No such File object: {shown}", param="file_id")
