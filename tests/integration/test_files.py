"""The Files API through a real ``serve`` process, driven by the official openai SDK unchanged.

Proves: ``files.create(file=..., purpose="batch")``, ``files.list``, ``files.retrieve``,
``files.content`` and ``files.delete`` work as against OpenAI; the bytes land in the data
folder's ``files`` directory and leave it on delete; a key of another team gets 404 for the
file (and an empty list), a key without the ``batch`` scope 403; an upload over the
configured size limit is refused with 413 naming ``file`` and leaves nothing on disk.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.integration._harness import ADMIN_KEY, Gateway

pytestmark = pytest.mark.integration

MAX_BYTES = 256 * 1024


def _lines(count: int) -> bytes:
    return b"".join(orjson.dumps({"custom_id": f"req-{i}", "method": "POST",
                                  "url": "/v1/chat/completions",
                                  "body": {"model": "m", "messages": [{"role": "user",
                                                                       "content": "hi"}]}})
                    + b"\n" for i in range(count))


def _admin(gw: Gateway, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{gw.origin}/admin/api/v1{path}", method=method,
        data=None if body is None else orjson.dumps(body),
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{method} {path}: {error.code} {error.read()!r}") from None


@dataclass
class Setup:
    gateway: Gateway
    keys: dict[str, str]  # who -> secret

    def client(self, who: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=self.keys[who],
                             max_retries=0, timeout=30)

    @property
    def files_dir(self) -> Path:
        return self.gateway.data_dir / "files"

    def on_disk(self) -> list[str]:
        return sorted(str(p.relative_to(self.files_dir)) for p in self.files_dir.rglob("*")
                      if p.is_file())


def _key(gw: Gateway, team: str, email: str, scopes: list[str]) -> tuple[str, str]:
    team_id = _admin(gw, "POST", "/teams", {"name": team})["id"] if not team.startswith("team_") \
        else team
    user = _admin(gw, "POST", "/users", {"email": email})
    _admin(gw, "PUT", f"/teams/{team_id}/members/{user['id']}", {"role": "member"})
    created = _admin(gw, "POST", "/keys", {"name": email, "team_id": team_id,
                                           "user_id": user["id"], "scopes": scopes})
    return str(created["secret"]), str(team_id)


def _wait_usable(gw: Gateway, secret: str) -> None:
    end = time.monotonic() + 10
    while True:
        request = urllib.request.Request(f"{gw.base_url}/models",
                                         headers={"Authorization": f"Bearer {secret}"})
        try:
            with urllib.request.urlopen(request, timeout=5):
                return
        except urllib.error.HTTPError as error:
            if time.monotonic() > end:
                raise AssertionError(f"key not usable: {error.code}") from None
        time.sleep(0.05)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    gw = Gateway(tmp_path_factory.mktemp("files"), name="files",
                 env={"INFERENCEOPS_FILES_MAX_BYTES": str(MAX_BYTES)})
    try:
        gw.wait_ready()
        a1, team_a = _key(gw, "alpha", "a1@example.com", ["inference", "batch"])
        a2, _ = _key(gw, team_a, "a2@example.com", ["batch"])
        b, _ = _key(gw, "beta", "b@example.com", ["inference", "batch"])
        no_batch, _ = _key(gw, team_a, "a3@example.com", ["inference"])
        keys = {"a1": a1, "a2": a2, "b": b, "no_batch": no_batch}
        for secret in keys.values():
            _wait_usable(gw, secret)
        yield Setup(gw, keys)
    finally:
        gw.stop()


def test_the_sdk_uploads_lists_retrieves_downloads_and_deletes(setup: Setup) -> None:
    content = _lines(5)
    with setup.client("a1") as client:
        created = client.files.create(file=("requests.jsonl", content), purpose="batch")
        assert created.id.startswith("file-") and created.object == "file"
        assert (created.bytes, created.filename, created.purpose, created.status) == \
            (len(content), "requests.jsonl", "batch", "processed")
        assert setup.on_disk() == [f"{created.id}.jsonl"]
        assert (setup.files_dir / f"{created.id}.jsonl").read_bytes() == content

        assert client.files.retrieve(created.id) == created
        assert [f.id for f in client.files.list()] == [created.id]
        assert [f.id for f in client.files.list(purpose="batch")] == [created.id]
        assert client.files.content(created.id).content == content

        deleted = client.files.delete(created.id)
        assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
        assert setup.on_disk() == []
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(created.id)


def test_the_sdk_sets_an_expiry_and_gets_the_default_without_one(setup: Setup) -> None:
    with setup.client("a1") as client:
        hour = client.files.create(file=("h.jsonl", _lines(1)), purpose="batch",
                                   expires_after={"anchor": "created_at", "seconds": 3600})
        assert hour.expires_at == hour.created_at + 3600
        month = client.files.create(file=("m.jsonl", _lines(1)), purpose="batch")
        assert month.expires_at == month.created_at + 30 * 86_400  # OpenAI's default, ours too
        with pytest.raises(openai.BadRequestError) as refused:
            client.files.create(file=("x.jsonl", _lines(1)), purpose="batch",
                                expires_after={"anchor": "created_at", "seconds": 60})
        assert refused.value.param == "expires_after[seconds]"
        for made in (hour, month):
            client.files.delete(made.id)


def test_the_sdk_pages_through_a_long_list(setup: Setup) -> None:
    with setup.client("a2") as client:
        made = [client.files.create(file=(f"f{i}.jsonl", _lines(1)), purpose="batch").id
                for i in range(5)]
        try:
            seen = [f.id for f in client.files.list(limit=2)]  # the SDK follows has_more/after
            assert seen == made[::-1]
        finally:
            for file_id in made:
                client.files.delete(file_id)


def test_another_team_cannot_see_read_or_delete_the_file(setup: Setup) -> None:
    with setup.client("a1") as owner, setup.client("b") as other, \
            setup.client("a2") as teammate:
        created = owner.files.create(file=("mine.jsonl", _lines(2)), purpose="batch")
        try:
            with pytest.raises(openai.NotFoundError):
                other.files.retrieve(created.id)
            with pytest.raises(openai.NotFoundError):
                other.files.content(created.id)
            with pytest.raises(openai.NotFoundError):
                other.files.delete(created.id)
            assert list(other.files.list()) == []
            assert teammate.files.retrieve(created.id).id == created.id
        finally:
            owner.files.delete(created.id)


def test_a_key_without_the_batch_scope_is_refused(setup: Setup) -> None:
    with setup.client("no_batch") as client, pytest.raises(openai.PermissionDeniedError):
        client.files.create(file=("x.jsonl", _lines(1)), purpose="batch")


def test_an_upload_over_the_limit_is_413_naming_file_and_leaves_nothing(setup: Setup) -> None:
    content = _lines(3000)
    assert len(content) > MAX_BYTES
    with setup.client("a1") as client, pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.jsonl", content), purpose="batch")
    assert caught.value.status_code == 413
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "file"
    assert setup.on_disk() == []


def test_a_broken_line_is_400_naming_the_line(setup: Setup) -> None:
    content = _lines(2) + b'{"custom_id": "req-0", "method": "POST", "url": "/v1/embeddings", ' \
        b'"body": {}}\n'
    with setup.client("a1") as client, pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("dup.jsonl", content), purpose="batch")
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "file" and body["line"] == 3
    assert setup.on_disk() == []
