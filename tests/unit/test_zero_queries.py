"""The common path runs no database query: inference and model listing read only the snapshot.

Builds the real serving application (store-backed identity, admin API
mounted) over a SQLite store, then counts every SQL statement any engine
executes while requests are served. Only the background feed may query, and
its intervals are set far beyond the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from tests.support import fake_upstream
from tests.support.asgi import request
from tests.support.fake_upstream import FakeUpstream

from inferenceops.app import create_app
from inferenceops.config.spec import load_platform
from inferenceops.control.bootstrap import prepare_store
from inferenceops.platform import KeyHasher
from inferenceops.platform_secret import platform_secret
from inferenceops.settings import Settings

ADMIN_KEY = "sk-io-zero-queries-admin-key-for-this-test-only"


@pytest.fixture
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    yield seen
    event.remove(Engine, "before_cursor_execute", count)


async def test_inference_and_model_listing_run_no_query(tmp_path: Path,
                                                        statements: list[str]) -> None:
    upstream = FakeUpstream()
    runner, port = await fake_upstream.start(upstream)
    config = tmp_path / "platform.yaml"
    config.write_text(f"""
deployments:
  - {{name: fake, engine: openai, served_model: ok, replicas: [{{url: "http://127.0.0.1:{port}/v1"}}]}}
models:
  - {{name: m, deployment: fake}}
""")
    settings = Settings(data_dir=tmp_path, config=config, snapshot_refresh_s=60,
                        outbox_flush_s=60, batch_poll_s=60, admin_key=ADMIN_KEY)
    platform = load_platform(config, loopback_base_url=settings.loopback_base_url)
    await prepare_store(settings.resolved_database_url, KeyHasher(platform_secret(settings)),
                        platform, admin_key=ADMIN_KEY, from_file=True)
    app = create_app(settings)
    await app.state.start()
    try:
        # The batch executor (a background service, like the feed) looks for work once at
        # start, then every batch_poll_s — its lines and, in a task beside them, batches to
        # validate: let both first looks pass before counting.
        executor = next(s for s in app.state.supervisor.services if s.name == "batch-executor")
        while getattr(executor, "rounds", 0) == 0 or executor.validator.rounds == 0:
            await asyncio.sleep(0.01)
        statements.clear()
        auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
        body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        for _ in range(20):
            chat = await request(app, "POST", "/v1/chat/completions", body=body, headers=auth)
            assert chat.status == 200, chat.body
            models = await request(app, "GET", "/v1/models", headers=auth)
            assert models.status == 200
            refused = await request(app, "GET", "/v1/models", headers={"Authorization": "Bearer x"})
            assert refused.status == 401
        assert statements == []
        admin = await request(app, "GET", "/admin/api/v1/me", headers=auth)
        assert admin.status == 200  # the admin side does query: the counter works
        assert statements
    finally:
        await app.state.stop()
        await runner.cleanup()
