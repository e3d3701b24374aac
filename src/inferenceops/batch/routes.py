"""The Files API over HTTP: ``/v1/files`` routed, authenticated and answered in OpenAI's shapes.

    POST   /v1/files                  multipart: file, purpose=batch   → the file object
    GET    /v1/files                  ?purpose&after&limit&order       → a list
    GET    /v1/files/{id}                                              → the file object
    GET    /v1/files/{id}/content                                      → its bytes, streamed
    DELETE /v1/files/{id}                                              → {id, object, deleted}

The gateway hands every ``/v1/files`` request to this application (``FilesApp``), which
the composition root builds on the first such request (``gateway.ondemand``): a worker
that never sees an upload never imports the store's file code or this parser.

Each request: route (404/405), authenticate the key against the data plane's current
snapshot (401), require the ``batch`` scope (403) — before a byte of the body is read —
then the service. Errors leave as OpenAI error JSON through the gateway's ``respond_error``
(request id and overhead headers included); anything unexpected is logged and is a plain
500. A refused upload's body is read on and dropped (up to ``DRAIN_BYTES``) before the
answer, so a client still sending sees the 400/413 rather than a reset connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qs

import orjson

from inferenceops.batch.multipart import boundary_of
from inferenceops.batch.service import FilesService, plausible_id
from inferenceops.error_shape import internal_error
from inferenceops.errors import (
    InferenceOpsError,
    InvalidParameter,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
)
from inferenceops.gateway.http import Receive, Scope, Send, respond, respond_error, response_headers
from inferenceops.pipeline.auth import authenticate, require_scope
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.sink import ClientGone
from inferenceops.platform import ApiKey, KeyHasher, Snapshot
from inferenceops.platform.identity import SCOPE_BATCH
from inferenceops.store.records import FileRecord
from inferenceops.store.repo.files import MAX_LIST, Order

log = logging.getLogger("inferenceops.batch")

PREFIX = "/v1/files"
DRAIN_BYTES = 64 * 1024 * 1024
_LIST_PURPOSES = ("batch", "batch_output")
_OCTETS = b"application/octet-stream"


def file_object(record: FileRecord) -> dict[str, Any]:
    """OpenAI's ``file`` object."""
    return {"id": record.id, "object": "file", "bytes": record.bytes,
            "created_at": int(record.created_at.timestamp()), "filename": record.filename,
            "purpose": record.purpose, "status": record.status,
            "expires_at": None if record.expires_at is None else int(record.expires_at.timestamp()),
            "status_details": None}


class Body:
    """The request body as an async iterator of chunks; ``drain`` drops what is left."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._more = True

    async def chunks(self) -> AsyncIterator[bytes]:
        while self._more:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._more = False
                raise ClientGone()
            self._more = bool(message.get("more_body", False))
            chunk: bytes = message.get("body", b"")
            if chunk:
                yield chunk

    async def drain(self, limit: int = DRAIN_BYTES) -> None:
        """Read and drop the rest of the body (at most ``limit`` bytes): the client may finish."""
        dropped = 0
        with suppress(ClientGone):
            async for chunk in self.chunks():
                dropped += len(chunk)
                if dropped > limit:
                    return


def batch_key(snapshot: Snapshot, hasher: KeyHasher, facts: RequestFacts,
              note_key_use: Callable[[str], None] | None) -> ApiKey:
    """The caller's key for the Files and Batch APIs: authenticated, holding the batch
    scope, and noted as used."""
    key = authenticate(snapshot.identity, hasher, facts.authorization, time.time())
    require_scope(key, SCOPE_BATCH)
    if note_key_use is not None:
        note_key_use(key.id)
    return key


class FilesApp:
    """ASGI3 callable for ``/v1/files`` (see the module doc)."""

    def __init__(self, service: FilesService, *, snapshot: Callable[[], Snapshot],
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
        started = _Started(send)
        try:
            handler, file_id = _route(scope["path"], scope["method"])
            key = batch_key(self._snapshot(), self._hasher, facts, self._note_key_use)
            await handler(self, key, facts, scope, body, started, file_id)
        except ClientGone:
            log.info("files: the client left during %s %s", scope["method"], scope["path"])
        except InferenceOpsError as exc:
            await self._fail(facts, body, started, exc)
        except Exception as exc:  # the top-level boundary of this sub-application
            await self._fail(facts, body, started, internal_error(exc))

    @staticmethod
    async def _fail(facts: RequestFacts, body: Body, started: _Started,
                    exc: InferenceOpsError) -> None:
        if started.started:  # a download already under way: end it (its length will be short)
            with suppress(OSError):
                await started.send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await body.drain()
        with suppress(OSError):
            await respond_error(started, facts, exc)

    # -- handlers ------------------------------------------------------------------------------

    async def create(self, key: ApiKey, facts: RequestFacts, scope: Scope, body: Body,
                     send: Send, file_id: str) -> None:
        retention = self._snapshot().policy.retention.get(key.team_id or "")
        if retention is not None and retention.zero:
            raise PermissionDenied("This team is zero-retention: no request body may be stored, "
                                   "and a file is stored request bodies. Send the requests one by "
                                   "one instead.", code="zero_retention")
        boundary = boundary_of(_header(scope, b"content-type"))
        record = await self.service.upload(key, boundary, body.chunks())
        await respond(send, facts, 200, orjson.dumps(file_object(record)))

    async def list(self, key: ApiKey, facts: RequestFacts, scope: Scope, body: Body,
                   send: Send, file_id: str) -> None:
        query = _query(scope.get("query_string", b""))
        purpose = query.get("purpose")
        if purpose is not None and purpose not in _LIST_PURPOSES:
            raise InvalidParameter(f"Invalid purpose {purpose[:64]!r}: use one of "
                                   f"{', '.join(_LIST_PURPOSES)}.", param="purpose")
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidParameter("order must be 'asc' or 'desc'.", param="order")
        limit = _limit(query.get("limit"))
        after = query.get("after")
        if after is not None and not plausible_id(after):
            raise InvalidParameter("after must be the id of a file from an earlier page.",
                                   param="after")
        records, has_more = await self.service.list(key, purpose=purpose, after=after,
                                                    limit=limit, order=_order(order))
        data = [file_object(r) for r in records]
        document = {"object": "list", "data": data,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None, "has_more": has_more}
        await respond(send, facts, 200, orjson.dumps(document))

    async def retrieve(self, key: ApiKey, facts: RequestFacts, scope: Scope, body: Body,
                       send: Send, file_id: str) -> None:
        record = await self.service.get(key, file_id)
        await respond(send, facts, 200, orjson.dumps(file_object(record)))

    async def content(self, key: ApiKey, facts: RequestFacts, scope: Scope, body: Body,
                      send: Send, file_id: str) -> None:
        record, pieces = await self.service.content(key, file_id)
        headers = response_headers(facts, _OCTETS)
        headers += [(b"content-length", b"%d" % record.bytes),
                    (b"content-disposition", _attachment(record.filename))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            async for piece in pieces:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        except OSError:
            raise ClientGone() from None
        finally:
            await pieces.aclose()
        with suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def delete(self, key: ApiKey, facts: RequestFacts, scope: Scope, body: Body,
                     send: Send, file_id: str) -> None:
        record = await self.service.delete(key, file_id)
        await respond(send, facts, 200, orjson.dumps(
            {"id": record.id, "object": "file", "deleted": True}))


_Bound = Callable[[FilesApp, ApiKey, RequestFacts, Scope, Body, Send, str], Awaitable[None]]


def _route(path: str, method: str) -> tuple[_Bound, str]:
    """The handler for ``method path`` and the file id in the path ("" for the collection)."""
    rest = path[len(PREFIX) + 1:].rstrip("/") \
        if path == PREFIX or path.startswith(PREFIX + "/") else None
    methods: dict[str, _Bound]
    file_id = ""
    if rest == "":
        methods = {"GET": FilesApp.list, "POST": FilesApp.create}
    elif rest and "/" not in rest:
        methods, file_id = {"GET": FilesApp.retrieve, "DELETE": FilesApp.delete}, rest
    elif rest and rest.count("/") == 1 and rest.endswith("/content") and rest != "/content":
        methods, file_id = {"GET": FilesApp.content}, rest.partition("/")[0]
    else:
        raise NotFound(f"Unknown request URL: {method} {path[:200]}.", code="unknown_url")
    handler = methods.get(method)
    if handler is None:
        allowed = ", ".join(methods)
        raise MethodNotAllowed(f"{method} is not allowed on {path[:200]}; use {allowed}.",
                               headers={"Allow": allowed})
    return handler, file_id


class _Started:
    """``send`` that remembers whether a response has started (a download cannot be unsaid)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    __call__ = send


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _query(raw: bytes) -> dict[str, str]:
    parsed = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items() if v}


def _limit(text: str | None) -> int:
    if text is None:
        return MAX_LIST
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIST:
        raise InvalidParameter(f"limit must be a whole number from 1 to {MAX_LIST}.", param="limit")
    return limit


def _order(text: str) -> Order:
    return "asc" if text == "asc" else "desc"


def _attachment(filename: str) -> bytes:
    safe = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                   for c in filename)
    return f'attachment; filename="{safe}"'.encode("ascii")
