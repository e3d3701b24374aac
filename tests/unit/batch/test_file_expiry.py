"""File expiry, on SQLite and PostgreSQL: ``expires_after`` as OpenAI takes it (and refuses it),
the operator's default, an expired file gone from its owner's reads at once, and the sweep
that deletes its row and bytes — never the input of a batch that has not finished."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.unit.batch.conftest import BOUNDARY, LIMITS, SECRET, Files, call, form_headers, lines

from inferenceops.batch.file_expiry import FileExpiry
from inferenceops.batch.files import FileStore
from inferenceops.batch.routes import FilesApp
from inferenceops.batch.service import FilesService
from inferenceops.platform import Catalog, Identity, KeyHasher, Snapshot
from inferenceops.store import Database
from inferenceops.store.tables_batch import Batch

pytestmark = pytest.mark.usefixtures("backend")
T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def field(name: str, value: str) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            ).encode()


def upload_form(content: bytes, **fields: str) -> bytes:
    file_part = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
                 'filename="in.jsonl"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 ).encode() + content + b"\r\n"
    return (field("purpose", "batch") + b"".join(field(k, v) for k, v in fields.items())
            + file_part + f"--{BOUNDARY}--\r\n".encode())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def files(store_url: str, tmp_path: Path, identity: Identity,
                clock: Clock) -> AsyncIterator[Files]:
    root = tmp_path / "files"
    service = FilesService(store_url, FileStore(root), LIMITS, clock=clock,
                           expire_after_s=86_400)
    app = FilesApp(service, snapshot=lambda: Snapshot(Catalog([]), identity),
                   hasher=KeyHasher(SECRET))
    yield Files(app, root)
    await service.close()


async def up(files: Files, **fields: str) -> tuple[int, dict[str, object]]:
    reply = await call(files.app, "POST", "/v1/files", parts=[upload_form(lines(2), **fields)],
                       headers=form_headers("a1"))
    return reply.status, reply.json()


async def test_expires_after_sets_the_expiry_and_the_default_covers_the_rest(files: Files) -> None:
    status, obj = await up(files, **{"expires_after[anchor]": "created_at",
                                     "expires_after[seconds]": "3600"})
    assert status == 200, obj
    assert obj["created_at"] == int(T0.timestamp())
    assert obj["expires_at"] == int(T0.timestamp()) + 3600
    status, default = await up(files)
    assert status == 200 and default["expires_at"] == int(T0.timestamp()) + 86_400


@pytest.mark.parametrize(("fields", "param"), [
    ({"expires_after[anchor]": "updated_at", "expires_after[seconds]": "3600"},
     "expires_after[anchor]"),
    ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "3599"},
     "expires_after[seconds]"),
    ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "2592001"},
     "expires_after[seconds]"),
    ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "1e4"},
     "expires_after[seconds]"),
    ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "٣٦٠٠"},
     "expires_after[seconds]"),
    ({"expires_after[seconds]": "3600"}, "expires_after"),
    ({"expires_after[anchor]": "created_at"}, "expires_after"),
])
async def test_an_expiry_openai_would_refuse_is_400_naming_it_and_stores_nothing(
        files: Files, fields: dict[str, str], param: str) -> None:
    status, body = await up(files, **fields)
    assert status == 400, body
    error = body["error"]
    assert isinstance(error, dict) and error["param"] == param
    assert files.stored() == []


async def test_an_expired_file_is_gone_from_its_owners_reads_at_once(files: Files,
                                                                    clock: Clock) -> None:
    _, obj = await up(files, **{"expires_after[anchor]": "created_at",
                                "expires_after[seconds]": "3600"})
    file_id = obj["id"]
    clock.now = T0 + timedelta(seconds=3599)
    assert (await files.get(f"/v1/files/{file_id}")).status == 200
    clock.now = T0 + timedelta(seconds=3600)
    assert (await files.get(f"/v1/files/{file_id}")).status == 404
    assert (await files.get(f"/v1/files/{file_id}/content")).status == 404
    assert (await files.get("/v1/files")).json()["data"] == []
    assert files.stored() == [f"{file_id}.jsonl"]  # until the sweep


async def test_the_sweep_deletes_expired_files_but_a_running_batchs_input(
        files: Files, clock: Clock, store_url: str) -> None:
    ids = [(await up(files, **{"expires_after[anchor]": "created_at",
                               "expires_after[seconds]": "3600"}))[1]["id"] for _ in range(3)]
    _, kept = await up(files)  # the 24-hour default
    db = Database(store_url)
    try:
        async with db.transaction() as tx:  # ids[0] is the input of a batch still running
            tx.add(Batch(id="batch_x", team_id="team_a", principal_id="usr_a1", key_id="key_a1",
                         endpoint="/v1/chat/completions", input_file_id=ids[0],
                         completion_window="24h", status="in_progress", total=2, completed=0,
                         failed=0, created_at=T0, expires_at=T0 + timedelta(days=1)))
        (files.root / f"{ids[2]}.jsonl").unlink()  # bytes already gone: the row still goes
        sweep = FileExpiry(store_url, FileStore(files.root), interval_s=60,
                           clock=lambda: T0 + timedelta(hours=2))
        try:
            assert await sweep.run_once() == 2
            assert await sweep.run_once() == 0
        finally:
            await sweep.stop()
        assert files.stored() == sorted([f"{ids[0]}.jsonl", f"{kept['id']}.jsonl"])
        async with db.transaction() as tx:
            (await tx.get(Batch, "batch_x")).status = "completed"  # type: ignore[union-attr]
        sweep = FileExpiry(store_url, FileStore(files.root), interval_s=60,
                           clock=lambda: T0 + timedelta(hours=2))
        try:
            assert await sweep.run_once() == 1
        finally:
            await sweep.stop()
        assert files.stored() == [f"{kept['id']}.jsonl"]
    finally:
        await db.close()
