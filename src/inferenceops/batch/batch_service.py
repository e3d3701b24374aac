"""The Batch API's operations: create, retrieve, list and cancel a batch, always for one owner.

Ownership is the Files API's (``service.owner_of``): the key's team, or for a key without
a team its principal; another team's batch is "not found". Creating checks the request
document (every field, so a malformed body is a 400 naming its ``param``, never a 500),
finds the input file as the same owner, and checks its lines against the batch
(``batch_lines.scan``, against the snapshot of the moment): a line that does not fit makes
the batch ``failed`` at once, with ``errors`` naming the lines; otherwise the batch is
``in_progress`` with one pending row per line, and the executor takes it from there.

That check runs inside the create call only for a file of at most ``inline_lines``
requests (the upload counted them): tens of milliseconds, and the caller learns at once.
A larger file's batch is stored ``validating``, as OpenAI answers, and the executor checks
it afterwards with the same rules (``batch.validation``): reading, checking and writing
the rows of a 50,000-line file takes seconds, which a create call should not hold. The
store is reached through a small pool of its own, opened on first use; a store that cannot
answer is a 503 ``batches_unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from inferenceops.batch.batch_lines import ENDPOINTS, Scan, scan
from inferenceops.batch.files import FileStore
from inferenceops.batch.service import owner_of, plausible_id
from inferenceops.batch.store_access import StoreAccess
from inferenceops.batch.upload import MAX_EXPIRY_S, MIN_EXPIRY_S
from inferenceops.errors import InvalidParameter, InvalidRequest, NotFound
from inferenceops.platform import ApiKey, Snapshot
from inferenceops.store.ids import new_sortable_id
from inferenceops.store.records import BatchRecord
from inferenceops.store.repo import batches as repo
from inferenceops.store.repo import files as files_repo

log = logging.getLogger("inferenceops.batch")
T = TypeVar("T")
WINDOWS = {"24h": timedelta(hours=24), "1h": timedelta(hours=1)}
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


class BatchesService(StoreAccess):
    """The Batch API over the store at ``url`` and the files folder ``files``."""

    def __init__(self, url: str, files: FileStore, *, inline_lines: int = 1000,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(url, "batches")
        self.files = files
        self.inline_lines = inline_lines
        self._clock = clock

    async def create(self, key: ApiKey, snapshot: Snapshot, doc: Any) -> BatchRecord:
        input_file_id, endpoint, window, metadata = check_create(doc)
        keep_s = check_output_expiry(doc.get("output_expires_after"))
        owner = owner_of(key)
        found = await self._run(False, lambda s: files_repo.get_file(s, input_file_id, owner,
                                                                     now=self._clock()))
        if found is None:
            raise NotFound(f"No such File object: {input_file_id}", param="input_file_id")
        if found.purpose != "batch":
            raise InvalidParameter(f"File {input_file_id} has purpose {found.purpose!r}; a batch "
                                   "reads a file uploaded with purpose 'batch'.",
                                   param="input_file_id")
        if found.line_count > self.inline_lines:
            return await self._add(key, "validating", input_file_id, endpoint, window,
                                   metadata, Scan(), keep_s)
        try:
            checked = await asyncio.to_thread(scan, self.files.path_of(found.path), endpoint,
                                              key, snapshot)
        except FileNotFoundError:
            log.error("batches: file %s has a row but no bytes at %s", input_file_id, found.path)
            raise NotFound(f"No such File object: {input_file_id}",
                           param="input_file_id") from None
        return await self._add(key, "failed" if checked.errors else "in_progress",
                               input_file_id, endpoint, window, metadata, checked, keep_s)

    async def _add(self, key: ApiKey, status: str, input_file_id: str, endpoint: str,
                   window: str, metadata: dict[str, str] | None, checked: Scan,
                   output_expires_after_s: int | None) -> BatchRecord:
        """Store the new batch as ``status`` (with its lines when it is ``in_progress``)."""
        owner = owner_of(key)
        now = self._clock().replace(microsecond=0)
        times = {"failed": {"failed_at": now}, "in_progress": {"in_progress_at": now}}
        record = BatchRecord(new_sortable_id("batch", now), owner.team_id, owner.principal_id,
                             key.id, endpoint, input_file_id, window, status, metadata,
                             tuple(checked.errors),
                             len(checked.lines) if status == "in_progress" else 0, 0, 0,
                             None, None, now, now + WINDOWS[window], times.get(status, {}),
                             output_expires_after_s)
        lines = checked.lines if status == "in_progress" else []
        await self._run(True, lambda s: repo.add_batch(s, record, lines))
        return record

    async def get(self, key: ApiKey, batch_id: str) -> BatchRecord:
        if not plausible_id(batch_id):
            raise _no_such_batch(batch_id)
        found = await self._run(False, lambda s: repo.get_batch(s, batch_id, owner_of(key)))
        if found is None:
            raise _no_such_batch(batch_id)
        return found

    async def list(self, key: ApiKey, *, after: str | None,
                   limit: int) -> tuple[list[BatchRecord], bool]:
        return await self._run(False, lambda s: repo.list_batches(
            s, owner_of(key), after=after, limit=limit))

    async def cancel(self, key: ApiKey, batch_id: str) -> BatchRecord:
        if not plausible_id(batch_id):
            raise _no_such_batch(batch_id)
        now = self._clock()
        found = await self._run(True, lambda s: repo.cancel_batch(s, batch_id, owner_of(key), now))
        if found is None:
            raise _no_such_batch(batch_id)
        if found.status not in ("cancelling", "cancelled"):
            raise InvalidRequest(f"Batch {batch_id} is {found.status}; only a batch in progress "
                                 "can be cancelled.", status=409, code="batch_not_cancellable")
        return found


def check_create(doc: Any) -> tuple[str, str, str, dict[str, str] | None]:
    """The fields of a create request, each checked (400 naming the field)."""
    if not isinstance(doc, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    input_file_id = doc.get("input_file_id")
    if not isinstance(input_file_id, str) or not plausible_id(input_file_id):
        raise InvalidParameter("input_file_id must be the id of a file uploaded with purpose "
                               "'batch'.", param="input_file_id")
    endpoint = doc.get("endpoint")
    if not isinstance(endpoint, str) or endpoint not in ENDPOINTS:
        raise InvalidParameter(f"endpoint must be one of {', '.join(ENDPOINTS)}.",
                               param="endpoint")
    window = doc.get("completion_window")
    if not isinstance(window, str) or window not in WINDOWS:
        raise InvalidParameter("completion_window must be '24h' or '1h'.",
                               param="completion_window")
    metadata = doc.get("metadata")
    if metadata is not None and not _good_metadata(metadata):
        raise InvalidParameter(
            f"metadata must be an object of at most {MAX_METADATA_PAIRS} string pairs (keys "
            f"up to {MAX_METADATA_KEY} characters, values up to {MAX_METADATA_VALUE}).",
            param="metadata")
    return input_file_id, str(endpoint), str(window), metadata


def check_output_expiry(value: Any) -> int | None:
    """OpenAI's ``output_expires_after`` — ``{"anchor": "created_at", "seconds": N}``, N from
    3600 to 2592000: the batch's output and error files expire N seconds after each is
    written (the anchor is the file's creation, not the batch's). Absent or null: they are
    kept until deleted. Anything else is a 400 naming the field."""
    if value is None:
        return None
    if not isinstance(value, dict) or not set(value) <= {"anchor", "seconds"}:
        raise InvalidParameter("output_expires_after must be an object with 'anchor' "
                               "('created_at') and 'seconds'.", param="output_expires_after")
    if value.get("anchor") != "created_at":
        raise InvalidParameter("output_expires_after.anchor must be 'created_at' (the output "
                               "file's creation).", param="output_expires_after.anchor")
    seconds = value.get("seconds")
    if type(seconds) is not int or not MIN_EXPIRY_S <= seconds <= MAX_EXPIRY_S:
        raise InvalidParameter(f"output_expires_after.seconds must be a whole number of seconds "
                               f"from {MIN_EXPIRY_S} to {MAX_EXPIRY_S}.",
                               param="output_expires_after.seconds")
    return seconds


def _good_metadata(metadata: Any) -> bool:
    return isinstance(metadata, dict) and len(metadata) <= MAX_METADATA_PAIRS and all(
        isinstance(k, str) and len(k) <= MAX_METADATA_KEY and isinstance(v, str)
        and len(v) <= MAX_METADATA_VALUE and "\x00" not in k + v for k, v in metadata.items())


def _no_such_batch(batch_id: str) -> NotFound:
    shown = batch_id if plausible_id(batch_id) else "(not an id)"
    return NotFound(f"No such Batch object: {shown}", param="batch_id")
