"""Finishing a batch: its output and error files written once, then its final state.

The executor that took the batch (``batch_finish.take_batch``, a lease) closes the lines
that will not run (``expired`` at the deadline, ``cancelled`` on cancel), then reads the
recorded lines in line order, a page at a time, into two files in the files folder:

* the output file: every ``completed`` line's result;
* the error file: every ``failed`` line's result, and for each ``expired`` line
  ``{"id", "custom_id", "response": null, "error": {"code": "batch_expired", …}}``.

Each is written to ``.partial/`` and renamed into place under a name fixed by the batch
(``file-<batch>-output``/``-errors``): an executor that dies half-way leaves its lease to
end, and the next one writes the same names again — a replacement, never a second copy.
The files' rows (purpose ``batch_output``, owned like the batch, so its team reads them with
``GET /v1/files/{id}/content``) and the batch's final state are written in one transaction,
and only while the lease is still held. A file with no lines is not made (its id stays null).
Each file expires ``output_expires_after_s`` after it is written when the batch's create
asked (OpenAI's ``output_expires_after``); else it is kept until deleted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inferenceops.batch.files import FileStore, PartialFile
from inferenceops.batch.line_run import result_line
from inferenceops.batch.service import stored_name
from inferenceops.store.records import FileRecord
from inferenceops.store.repo import batch_finish as finish
from inferenceops.store.repo import files as files_repo
from inferenceops.store.repo.batch_finish import Target
from inferenceops.store.tables_batch import Batch
from inferenceops.store.tables_files import File

PAGE = 1000
Sessions = Callable[[bool], AbstractAsyncContextManager[AsyncSession]]


class LeaseLost(Exception):
    """Another executor holds the batch now: this one's work on it is void."""


def file_ids(batch_id: str) -> tuple[str, str]:
    tail = batch_id.removeprefix("batch_")
    return f"file-{tail}-output", f"file-{tail}-errors"


class _Out:
    """One of the two files while it is written."""

    def __init__(self, file_id: str) -> None:
        self.file_id = file_id
        self.partial: PartialFile | None = None
        self.lines = 0

    async def add(self, files: FileStore, line: bytes) -> None:
        if self.partial is None:
            self.partial = await files.begin()
        await self.partial.write(line + b"\n")
        self.lines += 1


async def finalize(sessions: Sessions, files: FileStore, batch_id: str, owner: str,
                   now: datetime, lease_s: float, status: str, target: Target) -> bool:
    """Finish ``batch_id`` as ``target`` if this executor can take it; True when it did."""
    async with sessions(True) as s:
        if not await finish.take_batch(s, batch_id, owner, now, lease_s, status, target):
            return False
        if target != "completed":
            await finish.close_open_lines(s, batch_id, target)
    output, errors = (_Out(i) for i in file_ids(batch_id))
    try:
        async for outcome in _outcomes(sessions, batch_id):
            if outcome.state == "completed":
                await output.add(files, (outcome.result or "").encode())
            elif outcome.state == "failed":
                await errors.add(files, (outcome.result or "").encode())
            else:
                await errors.add(files, result_line(
                    f"batch_req_{batch_id.removeprefix('batch_')}_{outcome.line}",
                    outcome.custom_id, None, None, None,
                    {"code": "batch_expired", "message": "This request could not be executed "
                     "before the completion window expired."}))
        for out in (output, errors):
            if out.partial is not None:
                await out.partial.commit(stored_name(out.file_id))
    except BaseException:
        for out in (output, errors):
            if out.partial is not None:
                await out.partial.discard()
        raise
    async with sessions(True) as s:
        batch = (await s.execute(select(Batch).where(Batch.id == batch_id))).scalar_one()
        for out in (output, errors):
            if out.partial is not None:
                await _add_file(s, batch, out, now)
        done = await finish.finish_batch(
            s, batch_id, owner, now, status=target,
            output_file_id=output.file_id if output.partial else None,
            error_file_id=errors.file_id if errors.partial else None,
            completed=output.lines, failed=errors.lines)
        if not done:
            raise LeaseLost(batch_id)
    return True


async def _outcomes(sessions: Sessions, batch_id: str) -> AsyncIterator[Any]:
    after = 0
    while True:
        async with sessions(False) as s:
            page = await finish.outcomes(s, batch_id, after_line=after, limit=PAGE)
        for outcome in page:
            yield outcome
        if len(page) < PAGE:
            return
        after = page[-1].line


async def _add_file(session: AsyncSession, batch: Batch, out: _Out, now: datetime) -> None:
    """The file's row, unless an earlier attempt at this batch already added it."""
    assert out.partial is not None
    if await session.get(File, out.file_id) is not None:
        return
    kind = "output" if out.file_id.endswith("-output") else "errors"
    created = now.replace(microsecond=0)
    keep_s = batch.output_expires_after_s  # OpenAI's output_expires_after, from the file's birth
    await files_repo.add_file(session, FileRecord(
        out.file_id, batch.team_id, batch.principal_id, batch.key_id, "batch_output",
        f"{batch.id}_{kind}.jsonl", out.partial.size, out.lines, "processed",
        stored_name(out.file_id), created,
        None if keep_s is None else created + timedelta(seconds=keep_s)))

