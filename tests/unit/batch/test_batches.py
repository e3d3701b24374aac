"""The Batch API in-process (routes → service → store, executor → pipeline → fake engine), on
SQLite and PostgreSQL: OpenAI's Batch object, per-team visibility (404), the batch scope, lines
that do not fit the batch fail it naming the line, and an executor that runs every line once
into output and error files its team reads through the Files API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from tests.unit.batch.batch_world import World, make_world, request_lines
from tests.unit.conftest import Harness

from inferenceops.batch.line_run import request_line_id
from inferenceops.outbox import UsageRecord
from inferenceops.store import Database
from inferenceops.store.repo import batches as repo

pytestmark = pytest.mark.usefixtures("backend")

BATCH_KEYS = {"id", "object", "endpoint", "errors", "input_file_id", "completion_window",
              "status", "output_file_id", "error_file_id", "created_at", "in_progress_at",
              "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
              "cancelling_at", "cancelled_at", "request_counts", "metadata"}


@pytest.fixture
async def world(store_url: str, tmp_path: Path, harness: Harness) -> AsyncIterator[World]:
    w = make_world(store_url, tmp_path, harness)
    yield w
    await w.close()


async def test_create_retrieve_list_in_openais_shape(world: World) -> None:
    file_id = await world.upload(request_lines(3))
    created = await world.create(file_id, metadata={"purpose": "eval"})
    assert created.status == 200, created.body
    batch = created.json()
    assert set(batch) == BATCH_KEYS
    assert batch["id"].startswith("batch_") and batch["object"] == "batch"
    assert (batch["status"], batch["input_file_id"], batch["endpoint"]) == \
        ("in_progress", file_id, "/v1/chat/completions")
    assert batch["request_counts"] == {"total": 3, "completed": 0, "failed": 0}
    assert batch["metadata"] == {"purpose": "eval"} and batch["errors"] is None
    assert batch["expires_at"] - batch["created_at"] == 24 * 3600
    assert batch["in_progress_at"] == batch["created_at"]
    assert await world.batch(batch["id"]) == batch
    assert await world.batch(batch["id"], "a2") == batch  # a team mate sees it
    listed = (await world.get("/v1/batches")).json()
    assert listed == {"object": "list", "data": [batch], "first_id": batch["id"],
                      "last_id": batch["id"], "has_more": False}


async def test_another_team_gets_404_and_a_key_without_the_scope_403(world: World) -> None:
    file_id = await world.upload(request_lines(1))
    batch_id = (await world.create(file_id)).json()["id"]
    for path, method in ((f"/v1/batches/{batch_id}", "GET"),
                         (f"/v1/batches/{batch_id}/cancel", "POST")):
        for who in ("b", "platform"):
            answer = await world.get(path, who, method=method)
            assert answer.status == 404, (path, who)
            assert answer.json()["error"]["param"] == "batch_id"
    assert (await world.get("/v1/batches", "b")).json()["data"] == []
    assert (await world.create(file_id, "b")).status == 404  # nor its file
    denied = await world.get("/v1/batches", "a_inference")
    assert denied.status == 403 and denied.json()["error"]["code"] == "permission_denied"
    assert (await world.get("/v1/batches", "nobody")).status == 401


async def test_lines_that_do_not_fit_fail_the_batch_naming_each_line(world: World) -> None:
    content = (request_lines(1) + request_lines(1, url="/v1/embeddings", model="embed-model")
               .replace(b"req-1", b"req-2") + b"\n"
               + request_lines(1, model="secret-model").replace(b"req-1", b"req-3"))
    file_id = await world.upload(content, "b")
    batch = (await world.create(file_id, "b")).json()
    assert batch["status"] == "failed" and batch["failed_at"] is not None
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    errors = batch["errors"]
    assert errors["object"] == "list"
    assert [(e["code"], e["line"]) for e in errors["data"]] == [
        ("mismatched_endpoint", 2), ("model_not_found", 4)]
    assert all(set(e) == {"code", "message", "param", "line"} for e in errors["data"])
    # team A is granted embed-model, team B is not: the same line is fine for A's batch
    ok = await world.upload(request_lines(2, url="/v1/embeddings", model="embed-model"))
    assert (await world.create(ok, endpoint="/v1/embeddings")).json()["status"] == "in_progress"


@pytest.mark.parametrize("doc", [
    None, [], "x", 1, {}, {"input_file_id": 5}, {"input_file_id": "file-x", "endpoint": "/v1/x"},
    {"input_file_id": "file-x", "endpoint": "/v1/embeddings", "completion_window": "2h"},
    {"input_file_id": "\x00", "endpoint": "/v1/embeddings", "completion_window": "24h"},
    {"input_file_id": "file-x", "endpoint": "/v1/embeddings", "completion_window": "24h",
     "metadata": {str(i): "v" for i in range(17)}},
    {"input_file_id": "file-x", "endpoint": "/v1/embeddings", "completion_window": "24h",
     "metadata": {"k": 1}},
    {"input_file_id": "file-x", "endpoint": "/v1/embeddings", "completion_window": "24h",
     "metadata": {"k": "\x00"}},
    {"input_file_id": "file-nope", "endpoint": "/v1/embeddings", "completion_window": "24h"},
])
async def test_a_bad_create_body_is_a_4xx_in_openais_error_shape(world: World, doc: object) -> None:
    answer = await world.post("/v1/batches", doc)
    assert 400 <= answer.status < 500, answer.body
    assert set(answer.json()["error"]) >= {"message", "type", "param", "code"}


async def test_garbage_bodies_never_answer_500(world: World) -> None:
    for raw in (b"", b"{", b"\xff\xfe", b"[" * 5000, b'{"metadata": ' * 300, b"null",
                orjson.dumps({"input_file_id": "a" * 65})):
        answer = await world.post("/v1/batches", raw)
        assert 400 <= answer.status < 500, (raw[:20], answer.body)


async def test_an_input_file_in_use_cannot_be_deleted_until_the_batch_ends(world: World) -> None:
    file_id = await world.upload(request_lines(2))
    batch_id = (await world.create(file_id)).json()["id"]
    refused = await world.get(f"/v1/files/{file_id}", method="DELETE")
    assert refused.status == 409 and refused.json()["error"]["code"] == "file_in_use"
    assert (await world.get(f"/v1/files/{file_id}", "b", method="DELETE")).status == 404
    await world.executor.drain()
    assert (await world.batch(batch_id))["status"] == "completed"
    assert (await world.get(f"/v1/files/{file_id}", method="DELETE")).status == 200


async def test_the_executor_runs_every_line_into_the_output_file(world: World,
                                                                  harness: Harness) -> None:
    file_id = await world.upload(request_lines(5))
    batch_id = (await world.create(file_id)).json()["id"]
    await world.executor.drain()
    batch = await world.batch(batch_id)
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    assert batch["finalizing_at"] is not None and batch["completed_at"] is not None
    assert batch["error_file_id"] is None
    lines = await world.content(batch["output_file_id"])
    assert [line["custom_id"] for line in lines] == [f"req-{i}" for i in range(1, 6)]
    for line in lines:
        assert set(line) == {"id", "custom_id", "response", "error"} and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"]
        assert line["response"]["body"]["choices"][0]["message"]["content"]
    assert len({line["id"] for line in lines}) == 5
    output = (await world.get(f"/v1/files/{batch['output_file_id']}")).json()
    assert output["purpose"] == "batch_output" and output["bytes"] > 0
    assert (await world.get(f"/v1/files/{batch['output_file_id']}", "b")).status == 404
    records, _ = harness.app.state.outbox.take(10_000)
    assert not [r for r in records if isinstance(r, UsageRecord)]  # stored with the lines instead
    usage = await world.usage()
    assert sorted(r.request_id for r in usage) == sorted(line["id"] for line in lines)
    assert {r.priority for r in usage} == {"batch"} and all(r.completion_tokens for r in usage)


async def test_a_line_whose_lease_was_taken_over_is_billed_by_the_run_that_records_it(
        world: World) -> None:
    """A run that finishes after its lease passed to another executor stores neither its
    result nor its usage: the line is billed once, by the run that records it."""
    batch_id = (await world.create(await world.upload(request_lines(1)))).json()["id"]
    executor = world.executor
    owner = executor.owner
    executor.owner = "someone-else"  # the line is claimed, then its lease changes hands …
    claimed = await executor._claim(1)
    executor.owner = owner  # … so this executor's record of it is refused
    assert [c.batch_id for c in claimed] == [batch_id]
    await executor._run_one(claimed[0], asyncio.Semaphore(1))
    assert await world.usage() == ()
    executor.owner = "someone-else"
    await executor._run_one(claimed[0], asyncio.Semaphore(1))
    executor.owner = owner
    usage = await world.usage()
    assert [r.request_id for r in usage] == [request_line_id(claimed[0])]


async def test_a_line_the_engine_or_validation_refuses_goes_to_the_error_file(world: World) -> None:
    bad = request_lines(1, body={"model": "chat-model", "temperature": "hot",
                                 "messages": [{"role": "user", "content": "hi"}]})
    file_id = await world.upload(request_lines(1) + bad.replace(b"req-1", b"req-2"))
    batch_id = (await world.create(file_id)).json()["id"]
    await world.executor.drain()
    batch = await world.batch(batch_id)
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
    (error,) = await world.content(batch["error_file_id"])
    assert error["custom_id"] == "req-2" and error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["param"] == "temperature"
    assert [x["custom_id"] for x in await world.content(batch["output_file_id"])] == ["req-1"]


async def test_a_line_whose_lease_ended_is_run_again_and_written_once(world: World,
                                                                       store_url: str) -> None:
    file_id = await world.upload(request_lines(3))
    batch_id = (await world.create(file_id)).json()["id"]
    db = Database(store_url)
    try:  # another executor takes line 1 and dies
        async with db.transaction() as tx:
            (dead,) = await repo.claim_lines(tx, "dead-executor", world.clock(), 60, 1)
    finally:
        await db.close()
    await world.executor.drain()
    assert (await world.batch(batch_id))["status"] == "in_progress"  # line 1 is still leased
    world.clock.advance(61)
    await world.executor.drain()
    batch = await world.batch(batch_id)
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 3
    lines = await world.content(batch["output_file_id"])
    assert sorted(line["custom_id"] for line in lines) == ["req-1", "req-2", "req-3"]
    db = Database(store_url)
    try:  # the dead executor's late answer is refused
        async with db.transaction() as tx:
            assert not await repo.record_line(tx, dead.id, "dead-executor", ok=True,
                                              status_code=200, result="{}")
    finally:
        await db.close()


async def test_cancel_stops_the_batch(world: World) -> None:
    file_id = await world.upload(request_lines(4))
    batch_id = (await world.create(file_id)).json()["id"]
    cancelling = (await world.post(f"/v1/batches/{batch_id}/cancel", b"")).json()
    assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"] is not None
    await world.executor.drain()
    batch = await world.batch(batch_id)
    assert batch["status"] == "cancelled" and batch["cancelled_at"] is not None
    assert world.executor.ran == 0 and batch["output_file_id"] is None
    again = await world.post(f"/v1/batches/{batch_id}/cancel", b"")
    assert again.status == 200 and again.json()["status"] == "cancelled"
    done_id = (await world.create(file_id)).json()["id"]
    await world.executor.drain()
    late = await world.post(f"/v1/batches/{done_id}/cancel", b"")
    assert late.status == 409 and late.json()["error"]["code"] == "batch_not_cancellable"


async def test_past_its_window_a_batch_expires_with_batch_expired_lines(world: World) -> None:
    file_id = await world.upload(request_lines(3))
    batch_id = (await world.create(file_id, completion_window="1h")).json()["id"]
    world.clock.advance(3601)
    await world.executor.drain()
    batch = await world.batch(batch_id)
    assert batch["status"] == "expired" and batch["expired_at"] is not None
    assert batch["request_counts"] == {"total": 3, "completed": 0, "failed": 3}
    errors = await world.content(batch["error_file_id"])
    assert [(e["custom_id"], e["response"], e["error"]["code"]) for e in errors] == [
        (f"req-{i}", None, "batch_expired") for i in range(1, 4)]
