"""The files folder: a stored name always holds a whole file; discard and sweep leave nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from inferenceops.batch.files import PARTIAL, WRITE_BUFFER, FileStore


async def test_a_file_appears_under_its_name_only_when_committed(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files")
    partial = await store.begin()
    data = os.urandom(WRITE_BUFFER + 12345)
    for i in range(0, len(data), 4096):
        await partial.write(data[i:i + 4096])
    assert not (tmp_path / "files" / "f.jsonl").exists()
    path = await partial.commit("f.jsonl")
    assert path.read_bytes() == data and partial.size == len(data)
    assert list((tmp_path / "files" / PARTIAL).iterdir()) == []
    assert b"".join([piece async for piece in await store.read("f.jsonl", chunk=1000)]) == data
    assert await store.remove("f.jsonl") and not await store.remove("f.jsonl")


async def test_discard_removes_the_partial_file_and_may_repeat(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    partial = await store.begin()
    await partial.write(b"x" * (WRITE_BUFFER + 1))
    await partial.discard()
    await partial.discard()
    assert list((tmp_path / PARTIAL).iterdir()) == []


async def test_sweep_removes_only_old_partials(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    assert store.sweep_partial(60) == 0  # no folder yet
    old, new = await store.begin(), await store.begin()
    past = time.time() - 3600
    os.utime(old.path, (past, past))
    assert store.sweep_partial(60) == 1
    assert [p.name for p in (tmp_path / PARTIAL).iterdir()] == [new.path.name]
    await old.discard()
    await new.discard()


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".partial", "..", "a\\b"])
def test_a_name_is_never_a_path(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        FileStore(tmp_path).path_of(name)
