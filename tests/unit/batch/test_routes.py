"""The Files API end to end in-process (``batch.routes`` over the service, the folder and the
store), on SQLite and PostgreSQL: OpenAI's shapes, per-team visibility (404, not 403), the
``batch`` scope, limits with ``param``, and no partial file left by any refusal or by a client
that leaves mid-upload."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from tests.unit.batch.conftest import (
    BOUNDARY,
    SECRET,
    Files,
    auth,
    call,
    form,
    form_headers,
    lines,
)

from inferenceops.batch.files import FileStore
from inferenceops.batch.routes import FilesApp
from inferenceops.batch.service import FilesService
from inferenceops.batch.upload import FileLimits
from inferenceops.platform import Catalog, Identity, KeyHasher, Snapshot

pytestmark = pytest.mark.usefixtures("backend")


def _error(body: bytes) -> dict[str, object]:
    error = orjson.loads(body)["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    return dict(error)


async def test_upload_retrieve_list_content_delete_in_openais_shapes(files: Files) -> None:
    content = lines(3)
    up = await files.upload(content, filename="my batch.jsonl")
    assert up.status == 200, up.body
    obj = up.json()
    assert obj["id"].startswith("file-") and obj["object"] == "file"
    assert (obj["bytes"], obj["filename"], obj["purpose"], obj["status"]) == \
        (len(content), "my batch.jsonl", "batch", "processed")
    assert isinstance(obj["created_at"], int)
    assert set(obj) == {"id", "object", "bytes", "created_at", "filename", "purpose", "status",
                        "expires_at", "status_details"}
    assert up.headers["x-request-id"] and "x-inferenceops-overhead-ms" in up.headers

    assert (await files.get(f"/v1/files/{obj['id']}")).json() == obj
    listed = (await files.get("/v1/files")).json()
    assert listed == {"object": "list", "data": [obj], "first_id": obj["id"],
                      "last_id": obj["id"], "has_more": False}
    got = await files.get(f"/v1/files/{obj['id']}/content")
    assert got.status == 200 and got.body == content
    assert got.headers["content-length"] == str(len(content))
    assert files.stored() == [f"{obj['id']}.jsonl"]

    gone = await files.get(f"/v1/files/{obj['id']}", method="DELETE")
    assert gone.json() == {"id": obj["id"], "object": "file", "deleted": True}
    assert files.stored() == []
    assert (await files.get(f"/v1/files/{obj['id']}")).status == 404
    assert (await files.get(f"/v1/files/{obj['id']}/content")).status == 404


async def test_another_teams_file_is_not_found_by_any_route(files: Files) -> None:
    file_id = (await files.upload(lines(1))).json()["id"]
    for path, method in ((f"/v1/files/{file_id}", "GET"), (f"/v1/files/{file_id}/content", "GET"),
                         (f"/v1/files/{file_id}", "DELETE")):
        for who in ("b", "platform"):
            answer = await files.get(path, who, method=method)
            assert answer.status == 404, (path, method, who)
            assert _error(answer.body)["param"] == "file_id"
    assert (await files.get("/v1/files", "b")).json()["data"] == []
    # a team mate (another principal of team A) sees and may delete it
    assert (await files.get(f"/v1/files/{file_id}", "a2")).status == 200
    assert (await files.get(f"/v1/files/{file_id}", "a2", method="DELETE")).status == 200


async def test_a_key_needs_the_batch_scope_and_a_key_at_all(files: Files) -> None:
    denied = await files.upload(lines(1), who="a_inference")
    assert denied.status == 403 and "'batch' scope" in str(_error(denied.body)["message"])
    assert (await files.get("/v1/files", "a_inference")).status == 403
    assert (await call(files.app, "GET", "/v1/files")).status == 401
    assert (await files.get("/v1/files", "nobody")).status == 401
    assert files.stored() == []


async def test_listing_pages_with_after_limit_order_and_purpose(files: Files) -> None:
    ids = [(await files.upload(lines(1))).json()["id"] for _ in range(3)]
    page = (await files.get("/v1/files?limit=2")).json()
    assert [f["id"] for f in page["data"]] == ids[:0:-1] and page["has_more"]
    rest = (await files.get(f"/v1/files?limit=2&after={page['last_id']}")).json()
    assert [f["id"] for f in rest["data"]] == [ids[0]] and not rest["has_more"]
    asc = (await files.get("/v1/files?order=asc")).json()
    assert [f["id"] for f in asc["data"]] == ids
    assert (await files.get("/v1/files?purpose=batch_output")).json()["data"] == []
    for query, param in (("limit=0", "limit"), ("limit=x", "limit"), ("limit=10001", "limit"),
                         ("order=up", "order"), ("purpose=fine-tune", "purpose"),
                         ("after=%00", "after")):
        answer = await files.get(f"/v1/files?{query}")
        assert answer.status == 400 and _error(answer.body)["param"] == param, query


@pytest.mark.parametrize(("purpose", "says"), [(None, "Missing"), ("fine-tune", "not supported"),
                                               ("nonsense", "Invalid purpose")])
async def test_purpose_must_be_batch_and_the_error_names_it(files: Files, purpose: str | None,
                                                            says: str) -> None:
    answer = await files.upload(lines(1), purpose=purpose)
    assert answer.status == 400
    error = _error(answer.body)
    assert error["param"] == "purpose" and says in str(error["message"])
    assert files.stored() == []


async def test_purpose_after_the_file_works_too(files: Files) -> None:
    assert (await files.upload(lines(2), file_first=True)).status == 200


async def test_a_file_over_the_size_limit_is_413_naming_file(files: Files) -> None:
    big = lines(2000)  # > 64 KiB
    answer = await files.upload(big)
    assert answer.status == 413
    error = _error(answer.body)
    assert (error["param"], error["code"]) == ("file", "payload_too_large")
    assert files.stored() == []


async def test_too_many_lines_is_400_naming_file_and_the_line(files: Files) -> None:
    answer = await files.upload(lines(101))
    assert answer.status == 400
    error = _error(answer.body)
    assert (error["param"], error["code"], error["line"]) == ("file", "invalid_file", 101)
    assert files.stored() == []


@pytest.mark.parametrize(("content", "line", "says"), [
    (b'{"custom_id": "a"\n', 1, "not valid JSON"),
    (lines(2) + b"[1, 2]\n", 3, "not a JSON object"),
    (lines(1) + b'{"custom_id": "x", "method": "POST", "url": "/v1/models", "body": {}}', 2,
     "'url'"),
    (lines(1) + lines(1), 2, "repeats the custom_id \"r0\" of line 1"),
    (b"\n\xff\xfe\n", 2, "not valid JSON"),
    (b"\n\n", 0, "no requests"),
])
async def test_a_broken_line_is_refused_naming_it(files: Files, content: bytes, line: int,
                                                  says: str) -> None:
    answer = await files.upload(content)
    assert answer.status == 400
    error = _error(answer.body)
    assert error["param"] == "file" and says in str(error["message"])
    assert error.get("line", 0) == line
    assert files.stored() == []


async def test_a_truncated_upload_is_refused_and_leaves_nothing(files: Files) -> None:
    body = form(lines(50))
    answer = await call(files.app, "POST", "/v1/files", parts=[body[: len(body) // 2]],
                        headers=form_headers("a1"))
    assert answer.status == 400 and _error(answer.body)["code"] == "invalid_multipart"
    assert files.stored() == []


async def test_a_client_leaving_mid_upload_leaves_no_partial_file(files: Files) -> None:
    body = form(lines(50))
    pieces = [body[i:i + 1000] for i in range(0, len(body) // 2, 1000)]
    answer = await call(files.app, "POST", "/v1/files", parts=pieces, headers=form_headers("a1"),
                        disconnect=True)
    assert answer.status == 0  # nobody left to answer
    assert files.stored() == []
    assert (await files.get("/v1/files")).json()["data"] == []


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data",
                                          "multipart/form-data; boundary=", "text/plain; boundary=x"])
async def test_not_multipart_or_no_boundary_is_400(files: Files, content_type: str) -> None:
    answer = await call(files.app, "POST", "/v1/files", parts=[form(lines(1))],
                        headers={**auth("a1"), "Content-Type": content_type})
    assert answer.status == 400
    assert _error(answer.body)["code"] in ("invalid_content_type", "invalid_multipart")


async def test_the_upload_arrives_in_any_chunking(files: Files) -> None:
    body = form(lines(40))
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
    answer = await call(files.app, "POST", "/v1/files", parts=pieces, headers=form_headers("a1"))
    assert answer.status == 200
    got = await files.get(f"/v1/files/{answer.json()['id']}/content")
    assert got.body == lines(40)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("PUT", "/v1/files", 405), ("POST", "/v1/files/file-x", 405), ("GET", "/v1/files/a/b", 404),
    ("GET", "/v1/files//content", 404), ("GET", "/v1/filesx", 404), ("GET", "/v1/filesx/content", 404),
    ("GET", "/v1/files/" + "x" * 500, 404), ("GET", "/v1/files/\x00", 404),
])
async def test_unknown_routes_and_methods(files: Files, method: str, path: str,
                                          status: int) -> None:
    answer = await files.get(path, method=method)
    assert answer.status == status
    _error(answer.body)


async def test_the_multipart_boundary_may_be_quoted(files: Files) -> None:
    answer = await call(files.app, "POST", "/v1/files", parts=[form(lines(1))],
                        headers={**auth("a1"),
                                 "Content-Type": f'multipart/form-data; boundary="{BOUNDARY}"'})
    assert answer.status == 200


async def test_a_large_upload_and_download_stream_in_flat_memory(
        store_url: str, tmp_path: Path, identity: Identity, backend: str) -> None:
    """24 MB in and out: the process never holds more than a few MB of it (tracemalloc)."""
    if backend != "sqlite":
        pytest.skip("the memory profile does not depend on the backend")
    limits = FileLimits(max_bytes=64 * 1024 * 1024, max_lines=50_000, max_line_bytes=1 << 20)
    service = FilesService(store_url, FileStore(tmp_path / "files"), limits)
    snapshot = Snapshot(Catalog([]), identity)
    app = FilesApp(service, snapshot=lambda: snapshot, hasher=KeyHasher(SECRET))
    line = lines(1)[:-2] + b', "pad": "' + b"x" * 2000 + b'"}\n'
    count = 12_000
    head = form(b"").split(b"--" + BOUNDARY.encode() + b"--")[0]  # the form up to the file's end
    head, tail = head[:head.rindex(b"\r\n")], b"\r\n--" + BOUNDARY.encode() + b"--\r\n"

    def pieces() -> Iterator[bytes]:
        yield head
        for i in range(count):
            yield line.replace(b'"r0"', b'"r%d"' % i)
        yield tail

    source = pieces()

    async def receive() -> dict[str, object]:
        chunk = next(source, None)
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    sent: list[dict[str, object]] = []
    received = 0

    async def send(message: dict[str, object]) -> None:
        nonlocal received
        if message["type"] == "http.response.body":
            received += len(message.get("body", b""))  # type: ignore[arg-type]
            message = {**message, "body": b"" if received > 10_000 else message["body"]}
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/files", "query_string": b"",
             "headers": [(b"authorization", b"Bearer secret-a1"),
                         (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]}
    tracemalloc.start()
    try:
        await app(scope, receive, send)
        upload_peak = tracemalloc.get_traced_memory()[1]
        answer = orjson.loads(sent[-1]["body"])  # type: ignore[arg-type]
        assert "id" in answer, answer
        file_id = answer["id"]
        tracemalloc.reset_peak()
        received = 0
        await app({**scope, "method": "GET", "path": f"/v1/files/{file_id}/content"},
                  receive, send)
        download_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await service.close()
    size = sum(len(line) + len(str(i)) - 1 for i in range(count))
    assert size > 24_000_000 and received == size
    assert upload_peak < 8_000_000 and download_peak < 4_000_000, (upload_peak, download_peak)
