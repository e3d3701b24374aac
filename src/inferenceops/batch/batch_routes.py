"""The Batch API over HTTP: ``/v1/batches`` routed, authenticated and answered in OpenAI's shapes.

    POST /v1/batches                {input_file_id, endpoint, completion_window, metadata} → batch
    GET  /v1/batches                ?after&limit                                          → a list
    GET  /v1/batches/{id}                                                                 → batch
    POST /v1/batches/{id}/cancel                                                          → batch

Built with the Files API on the first ``/v1/files`` or ``/v1/batches`` request
(``app.files_on_demand``; ``BatchApi`` sends each path to its application). Each request:
route (404/405), authenticate the key against the data plane's current snapshot (401),
require the ``batch`` scope (403), then the service. Errors leave as OpenAI error JSON
through the gateway's ``respond_error``; anything unexpected is logged and is a plain 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from inferenceops.batch.batch_service import BatchesService
from inferenceops.batch.routes import Body, FilesApp, _query, batch_key
from inferenceops.batch.service import plausible_id
from inferenceops.error_shape import internal_error
from inferenceops.errors import (
    InferenceOpsError,
    InvalidJSON,
    InvalidParameter,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)
from inferenceops.gateway.http import Receive, Scope, Send, respond, respond_error
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.sink import ClientGone
from inferenceops.platform import ApiKey, KeyHasher, Snapshot
from inferenceops.store.records import BatchRecord
from inferenceops.store.repo.batches import MAX_LIST

PREFIX = "/v1/batches"
MAX_BODY = 64 * 1024  # a create request is a few short fields and 16 metadata pairs
DEFAULT_LIMIT = 20  # OpenAI's default page


def batch_object(record: BatchRecord) -> dict[str, Any]:
    """OpenAI's ``batch`` object."""

    def stamp(name: str) -> int | None:
        value = record.times.get(name)
        return None if value is None else int(value.timestamp())

    return {
        "id": record.id, "object": "batch", "endpoint": record.endpoint,
        "errors": {"object": "list", "data": list(record.errors)} if record.errors else None,
        "input_file_id": record.input_file_id, "completion_window": record.completion_window,
        "status": record.status, "output_file_id": record.output_file_id,
        "error_file_id": record.error_file_id, "created_at": int(record.created_at.timestamp()),
        "in_progress_at": stamp("in_progress_at"), "expires_at": int(record.expires_at.timestamp()),
        "finalizing_at": stamp("finalizing_at"), "completed_at": stamp("completed_at"),
        "failed_at": stamp("failed_at"), "expired_at": stamp("expired_at"),
        "cancelling_at": stamp("cancelling_at"), "cancelled_at": stamp("cancelled_at"),
        "request_counts": {"total": record.total, "completed": record.completed,
                           "failed": record.failed},
        "metadata": record.metadata,
    }


class BatchesApp:
    """ASGI3 callable for ``/v1/batches`` (see the module doc)."""

    def __init__(self, service: BatchesService, *, snapshot: Callable[[], Snapshot],
                 hasher: KeyHasher, note_key_use: Callable[[str], None] | None = None) -> None:
        self.service = service
        self._snapshot = snapshot
        self._hasher = hasher
        self._note_key_use = note_key_use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        facts = RequestFacts.from_headers(scope["headers"])
        body = Body(receive)
        try:
            handler, batch_id = _route(scope["path"], scope["method"])
            snapshot = self._snapshot()
            key = batch_key(snapshot, self._hasher, facts, self._note_key_use)
            document = await handler(self, key, snapshot, scope, body, batch_id)
            await respond(send, facts, 200, orjson.dumps(document))
        except ClientGone:
            return
        except InferenceOpsError as exc:
            await _fail(send, facts, body, exc)
        except Exception as exc:  # the top-level boundary of this sub-application
            await _fail(send, facts, body, internal_error(exc))

    async def create(self, key: ApiKey, snapshot: Snapshot, scope: Scope, body: Body,
                     batch_id: str) -> dict[str, Any]:
        raw = bytearray()
        async for chunk in body.chunks():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise PayloadTooLarge(f"A batch request is at most {MAX_BODY} bytes.")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidJSON(f"The request body is not valid JSON: {exc}") from None
        return batch_object(await self.service.create(key, snapshot, doc))

    async def list(self, key: ApiKey, snapshot: Snapshot, scope: Scope, body: Body,
                   batch_id: str) -> dict[str, Any]:
        query = _query(scope.get("query_string", b""))
        after = query.get("after")
        if after is not None and not plausible_id(after):
            raise InvalidParameter("after must be the id of a batch from an earlier page.",
                                   param="after")
        limit = _limit(query.get("limit"))
        records, has_more = await self.service.list(key, after=after, limit=limit)
        data = [batch_object(r) for r in records]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": has_more}

    async def retrieve(self, key: ApiKey, snapshot: Snapshot, scope: Scope, body: Body,
                       batch_id: str) -> dict[str, Any]:
        return batch_object(await self.service.get(key, batch_id))

    async def cancel(self, key: ApiKey, snapshot: Snapshot, scope: Scope, body: Body,
                     batch_id: str) -> dict[str, Any]:
        return batch_object(await self.service.cancel(key, batch_id))


async def _fail(send: Send, facts: RequestFacts, body: Body, exc: InferenceOpsError) -> None:
    await body.drain(MAX_BODY)
    try:
        await respond_error(send, facts, exc)
    except OSError:
        return


_Bound = Callable[[BatchesApp, ApiKey, Snapshot, Scope, Body, str], Awaitable[dict[str, Any]]]


def _route(path: str, method: str) -> tuple[_Bound, str]:
    """The handler for ``method path`` and the batch id in the path ("" for the collection)."""
    rest = path[len(PREFIX) + 1:].rstrip("/") \
        if path == PREFIX or path.startswith(PREFIX + "/") else None
    methods: dict[str, _Bound]
    batch_id = ""
    if rest == "":
        methods = {"GET": BatchesApp.list, "POST": BatchesApp.create}
    elif rest and "/" not in rest:
        methods, batch_id = {"GET": BatchesApp.retrieve}, rest
    elif rest and rest.count("/") == 1 and rest.endswith("/cancel") and rest != "/cancel":
        methods, batch_id = {"POST": BatchesApp.cancel}, rest.partition("/")[0]
    else:
        raise NotFound(f"Unknown request URL: {method} {path[:200]}.", code="unknown_url")
    handler = methods.get(method)
    if handler is None:
        allowed = ", ".join(methods)
        raise MethodNotAllowed(f"{method} is not allowed on {path[:200]}; use {allowed}.",
                               headers={"Allow": allowed})
    return handler, batch_id


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIST:
        raise InvalidParameter(f"limit must be a whole number from 1 to {MAX_LIST}.", param="limit")
    return limit


class BatchApi:
    """``/v1/files`` and ``/v1/batches`` as one application: each path to its own."""

    def __init__(self, files: FilesApp, batches: BatchesApp) -> None:
        self.files = files
        self.batches = batches

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await self.batches(scope, receive, send)
        else:
            await self.files(scope, receive, send)
