"""``output_expires_after`` on batch create, on SQLite and PostgreSQL: OpenAI's bounds (400
naming the field otherwise); the output and error files expire that long after they are
written — gone for their owner at once, then deleted by the files-expiry sweep; without it
they are kept until deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.batch.batch_world import World, make_world, request_lines
from tests.unit.conftest import Harness

from inferenceops.batch.file_expiry import FileExpiry
from inferenceops.batch.files import FileStore

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
async def world(store_url: str, tmp_path: Path, harness: Harness) -> AsyncIterator[World]:
    w = make_world(store_url, tmp_path, harness)
    yield w
    await w.close()


@pytest.mark.parametrize(("value", "param"), [
    ({"anchor": "created_at"}, "output_expires_after.seconds"),
    ({"seconds": 3600}, "output_expires_after.anchor"),
    ({"anchor": "completed_at", "seconds": 3600}, "output_expires_after.anchor"),
    ({"anchor": "created_at", "seconds": 3599}, "output_expires_after.seconds"),
    ({"anchor": "created_at", "seconds": 2_592_001}, "output_expires_after.seconds"),
    ({"anchor": "created_at", "seconds": "3600"}, "output_expires_after.seconds"),
    ({"anchor": "created_at", "seconds": 3600.5}, "output_expires_after.seconds"),
    ({"anchor": "created_at", "seconds": True}, "output_expires_after.seconds"),
    ({"anchor": "created_at", "seconds": 3600, "unit": "s"}, "output_expires_after"),
    (3600, "output_expires_after"),
    ([], "output_expires_after"),
])
async def test_an_expiry_openai_would_refuse_is_400_naming_the_field(
        world: World, value: Any, param: str) -> None:
    file_id = await world.upload(request_lines(1))
    answer = await world.create(file_id, output_expires_after=value)
    assert answer.status == 400, answer.body
    assert (answer.json()["error"]["param"], answer.json()["error"]["code"]) == \
        (param, "invalid_value")
    assert (await world.get("/v1/batches")).json()["data"] == []  # nothing was created


async def test_output_and_error_files_expire_after_they_are_written(world: World) -> None:
    bad = request_lines(1, body={"model": "chat-model", "temperature": "hot",
                                 "messages": [{"role": "user", "content": "hi"}]})
    file_id = await world.upload(request_lines(1) + bad.replace(b"req-1", b"req-2"))
    batch_id = (await world.create(file_id, output_expires_after={
        "anchor": "created_at", "seconds": 3600})).json()["id"]
    world.clock.advance(600)  # the anchor is the files' creation, not the batch's
    await world.executor.drain()
    batch = await world.batch(batch_id)
    made = [batch["output_file_id"], batch["error_file_id"]]
    for file_id_out in made:
        shown = (await world.get(f"/v1/files/{file_id_out}")).json()
        assert shown["expires_at"] == shown["created_at"] + 3600
        assert shown["created_at"] == batch["completed_at"]
    world.clock.advance(3600)
    for file_id_out in made:
        assert (await world.get(f"/v1/files/{file_id_out}")).status == 404
        assert (await world.get(f"/v1/files/{file_id_out}/content")).status == 404
    sweep = FileExpiry(world.store_url, FileStore(world.root), interval_s=60, clock=world.clock)
    try:
        assert await sweep.run_once() == 2
    finally:
        await sweep.stop()
    stored = sorted(p.name for p in world.root.iterdir() if p.is_file())
    assert stored == [f"{file_id}.jsonl"]  # the input's own expiry is 30 days away


async def test_without_it_the_output_is_kept_until_deleted(world: World) -> None:
    batch_id = (await world.create(await world.upload(request_lines(1)))).json()["id"]
    await world.executor.drain()
    output_id = (await world.batch(batch_id))["output_file_id"]
    assert (await world.get(f"/v1/files/{output_id}")).json()["expires_at"] is None
    world.clock.advance(365 * 86_400)
    assert (await world.get(f"/v1/files/{output_id}")).status == 200
