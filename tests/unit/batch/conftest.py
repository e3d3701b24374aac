"""Files API fixtures: the store fixtures (SQLite and PostgreSQL), keys of two teams, the app.

``files`` is a ``FilesApp`` over a migrated database of its own (``store_url``, from the
store tests' fixtures, so every test using it runs on both backends) and a files folder
in ``tmp_path``, with small limits so refusals are cheap to reach. Keys: two members of
team A, one of team B, a team-A key without the ``batch`` scope, and a platform key with
no team.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.asgi import Response
from tests.unit.store.conftest import backend, postgres, store_url, templates

from inferenceops.batch.files import FileStore
from inferenceops.batch.routes import FilesApp
from inferenceops.batch.service import FilesService
from inferenceops.batch.upload import FileLimits
from inferenceops.platform import ApiKey, Catalog, Identity, KeyHasher, Principal, Snapshot
from inferenceops.platform.identity import PLATFORM_ADMIN

__all__ = ["backend", "postgres", "store_url", "templates"]

SECRET = b"batch-unit-test-platform-secret-of-32-bytes+"
KEYS = {
    "a1": ApiKey("key_a1", "sk-a1", Principal("usr_a1"), "team_a", frozenset({"inference", "batch"})),
    "a2": ApiKey("key_a2", "sk-a2", Principal("sa_a2", "service_account"), "team_a",
                 frozenset({"batch"})),
    "b": ApiKey("key_b", "sk-b", Principal("usr_b"), "team_b", frozenset({"inference", "batch"})),
    "a_inference": ApiKey("key_ai", "sk-ai", Principal("usr_a1"), "team_a",
                          frozenset({"inference"})),
    "platform": ApiKey("key_p", "sk-p", Principal("usr_p", "user", PLATFORM_ADMIN), None,
                       frozenset({"inference", "batch", "admin"})),
}
LIMITS = FileLimits(max_bytes=64 * 1024, max_lines=100, max_line_bytes=8 * 1024)
BOUNDARY = "b0undary-xyz"


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer secret-{who}"}


def form(content: bytes, *, purpose: str | None = "batch", filename: str = "in.jsonl",
         boundary: str = BOUNDARY, file_first: bool = False) -> bytes:
    """A multipart/form-data body as the openai SDK (httpx) writes it."""
    parts = []
    if purpose is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
                     f"{purpose}\r\n".encode())
    file_part = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 ).encode() + content + b"\r\n"
    parts.insert(0 if file_first else len(parts), file_part)
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def form_headers(who: str, boundary: str = BOUNDARY) -> dict[str, str]:
    return {**auth(who), "Content-Type": f"multipart/form-data; boundary={boundary}"}


def lines(count: int, prefix: str = "r") -> bytes:
    return b"".join(
        b'{"custom_id": "%s%d", "method": "POST", "url": "/v1/chat/completions", '
        b'"body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}\n'
        % (prefix.encode(), i) for i in range(count))


async def call(app: object, method: str, path: str, *, headers: dict[str, str] | None = None,
               parts: list[bytes] | None = None, disconnect: bool = False) -> Response:
    """One request through an ASGI app: ``path`` may carry a query; the body goes in ``parts``
    (one message each); ``disconnect`` makes the client leave after the last part instead of
    finishing the body."""
    path, _, query = path.partition("?")
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(),
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
             "client": ("127.0.0.1", 5000)}
    pending = list(parts or [b""])
    response = Response()

    async def receive() -> dict[str, object]:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or disconnect}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        if disconnect:
            raise OSError("the client left")
        if message["type"] == "http.response.start":
            response.status = message["status"]  # type: ignore[assignment]
            response.headers = {k.decode(): v.decode()  # type: ignore[attr-defined]
                                for k, v in message["headers"]}  # type: ignore[attr-defined]
        elif message.get("body"):
            response.chunks.append(message["body"])  # type: ignore[arg-type]

    await app(scope, receive, send)  # type: ignore[operator]
    return response


@dataclass
class Files:
    app: FilesApp
    root: Path

    async def upload(self, content: bytes, who: str = "a1", **kw: object) -> Response:
        return await call(self.app, "POST", "/v1/files", parts=[form(content, **kw)],  # type: ignore[arg-type]
                          headers=form_headers(who))

    async def get(self, path: str, who: str = "a1", method: str = "GET") -> Response:
        return await call(self.app, method, path, headers=auth(who))

    def stored(self) -> list[str]:
        """Every file in the folder, partial uploads included (relative paths)."""
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())


@pytest.fixture
def identity() -> Identity:
    hasher = KeyHasher(SECRET)
    return Identity([(hasher.digest(f"secret-{who}".encode()), key) for who, key in KEYS.items()],
                    {})


@pytest.fixture
async def files(store_url: str, tmp_path: Path, identity: Identity) -> AsyncIterator[Files]:
    root = tmp_path / "files"
    service = FilesService(store_url, FileStore(root), LIMITS)
    snapshot = Snapshot(Catalog([]), identity)
    used: list[str] = []
    app = FilesApp(service, snapshot=lambda: snapshot, hasher=KeyHasher(SECRET),
                   note_key_use=used.append)
    yield Files(app, root)
    await service.close()


Maker = Callable[..., bytes]
