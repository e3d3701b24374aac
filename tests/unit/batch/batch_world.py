"""A Batch API world for unit tests: the Files and Batch APIs over a migrated store of their own
(SQLite and PostgreSQL), the unit harness's pipeline and fake engine, keys of two teams with
grants, and an executor with a clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from tests.support.asgi import Response
from tests.unit.batch.conftest import KEYS, LIMITS, SECRET, auth, call, form, form_headers
from tests.unit.conftest import Harness

from inferenceops.batch.batch_routes import BatchApi, BatchesApp
from inferenceops.batch.batch_service import BatchesService
from inferenceops.batch.executor import BatchExecutor
from inferenceops.batch.files import FileStore
from inferenceops.batch.routes import FilesApp
from inferenceops.batch.service import FilesService
from inferenceops.outbox import UsageRecord
from inferenceops.platform import Identity, KeyHasher, Snapshot
from inferenceops.store import Database
from inferenceops.store.repo.usage import list_usage

GRANTS = {"team_a": ["chat-model", "embed-model"], "team_b": ["chat-model"]}
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def request_lines(count: int, *, model: str = "chat-model", url: str = "/v1/chat/completions",
                  body: dict[str, Any] | None = None) -> bytes:
    def one(i: int) -> bytes:
        payload = body if body is not None else (
            {"model": model, "input": f"text {i}"} if url == "/v1/embeddings" else
            {"model": model, "messages": [{"role": "user", "content": f"question {i}"}]})
        return orjson.dumps({"custom_id": f"req-{i}", "method": "POST", "url": url,
                             "body": payload}) + b"\n"
    return b"".join(one(i) for i in range(1, count + 1))


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    app: BatchApi
    executor: BatchExecutor
    clock: Clock
    root: Path
    services: list[Any] = field(default_factory=list)
    store_url: str = ""

    async def usage(self) -> tuple[UsageRecord, ...]:
        """The usage records in the store (batch lines' are stored with their results)."""
        db = Database(self.store_url)
        try:
            async with db.read("reading usage") as tx:
                return await list_usage(tx)
        finally:
            await db.close()

    async def upload(self, content: bytes, who: str = "a1") -> str:
        reply = await call(self.app, "POST", "/v1/files", parts=[form(content)],
                           headers=form_headers(who))
        assert reply.status == 200, reply.body
        return str(reply.json()["id"])

    async def create(self, file_id: str, who: str = "a1", **fields: Any) -> Response:
        doc = {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
               "completion_window": "24h", **fields}
        return await self.post("/v1/batches", doc, who)

    async def post(self, path: str, doc: Any, who: str = "a1") -> Response:
        body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        return await call(self.app, "POST", path, parts=[body],
                          headers={**auth(who), "Content-Type": "application/json"})

    async def get(self, path: str, who: str = "a1", method: str = "GET") -> Response:
        return await call(self.app, method, path, headers=auth(who))

    async def batch(self, batch_id: str, who: str = "a1") -> dict[str, Any]:
        reply = await self.get(f"/v1/batches/{batch_id}", who)
        assert reply.status == 200, reply.body
        return dict(reply.json())

    async def content(self, file_id: str, who: str = "a1") -> list[dict[str, Any]]:
        reply = await self.get(f"/v1/files/{file_id}/content", who)
        assert reply.status == 200, reply.body
        return [orjson.loads(line) for line in reply.body.splitlines()]

    async def close(self) -> None:
        await self.executor.stop()
        for service in self.services:
            await service.close()


def make_world(store_url: str, tmp_path: Path, harness: Harness, *,
               inline_lines: int = 1000) -> World:
    hasher = KeyHasher(SECRET)
    identity = Identity([(hasher.digest(f"secret-{who}".encode()), key)
                         for who, key in KEYS.items()], GRANTS)
    snapshot = Snapshot(harness.app.state.snapshot.catalog, identity)
    clock = Clock()
    store = FileStore(tmp_path / "files")
    files = FilesService(store_url, store, LIMITS, clock=clock)
    batches = BatchesService(store_url, store, inline_lines=inline_lines, clock=clock)
    app = BatchApi(FilesApp(files, snapshot=lambda: snapshot, hasher=hasher),
                   BatchesApp(batches, snapshot=lambda: snapshot, hasher=hasher))
    executor = BatchExecutor(store_url, store, harness.app.state.pipeline, lambda: snapshot,
                             lease_s=60, clock=clock)
    return World(app, executor, clock, tmp_path / "files", [files, batches], store_url)
