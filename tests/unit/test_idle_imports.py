"""An idle serving worker does not load what it does not use; the server's main process neither.

``test_layering`` reads imports statically; this test runs them. In fresh interpreters
(each ``sys.modules`` starts clean):

* the server's main process as ``inferenceops.launch`` leaves it before forking
  (``preload`` of ``inferenceops.app``) holds no CLI, migration or admin module;
* a worker (``create_app`` and its lifespan start-up, on a store prepared by another
  process, as ``serve`` does) is ready — its first snapshot built — without the admin
  API (FastAPI, Starlette, PyJWT), Alembic/Mako, typer/click or the cryptography
  bindings; its first ``/admin/`` request then loads and serves the admin API.

Holding these (its own admin API, the CLI's modules inherited through fork) kept an
idle worker at ~105 MB RSS; without them it idles at ~68 MB (``bench/idle_memory.py``).
An import that brings one back fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Top-level modules (or prefixes) an idle worker and the main process must not hold.
NOT_AT_IDLE = ("fastapi", "starlette", "jwt", "alembic", "mako", "pygments", "typer", "click",
               "rich", "cryptography", "inferenceops.admin", "inferenceops.cli",
               "inferenceops.control.bootstrap", "inferenceops.config.apply",
               "inferenceops.store.migrate")

_HELD = f"""
import sys
NOT_AT_IDLE = {NOT_AT_IDLE!r}
def held():
    return sorted(m for m in sys.modules if any(m == n or m.startswith(n + ".") for n in NOT_AT_IDLE))
"""

_PREPARE = """
import asyncio
from inferenceops.config.spec import load_platform
from inferenceops.control.bootstrap import prepare_store
from inferenceops.platform import KeyHasher
from inferenceops.platform_secret import platform_secret
from inferenceops.settings import Settings

settings = Settings()
platform = load_platform(settings.config, loopback_base_url=settings.loopback_base_url)
asyncio.run(prepare_store(settings.resolved_database_url, KeyHasher(platform_secret(settings)),
                          platform, admin_key="sk-io-idle-imports-test-admin-key", from_file=False))
"""

_MAIN = _HELD + """
import json
from inferenceops.launch import preload
preload("inferenceops.app:create_app")
print(json.dumps({"held": held(), "app": "inferenceops.app" in sys.modules,
                  "store": "inferenceops.store.repo" in sys.modules}))
"""

_WORKER = _HELD + """
import asyncio, json
from tests.support.asgi import request
from inferenceops.app import create_app

async def main():
    app = create_app()
    messages = [{"type": "lifespan.startup"}]
    sent = []
    async def receive():
        return messages.pop(0) if messages else await asyncio.Event().wait()
    async def send(message):
        sent.append(message["type"])
    lifespan = asyncio.ensure_future(app({"type": "lifespan"}, receive, send))
    while not sent:
        await asyncio.sleep(0.01)
    idle = {"startup": sent[0], "ready": app.state.ready, "held": held()}
    ready = await request(app, "GET", "/readyz")
    doc = await request(app, "GET", "/admin/api/v1/openapi.json")
    after = {"readyz": ready.status, "openapi": doc.status,
             "title": doc.json()["info"]["title"] if doc.status == 200 else None,
             "fastapi": "fastapi" in sys.modules}
    await app.state.stop()
    lifespan.cancel()
    print(json.dumps({"idle": idle, "after": after}))

asyncio.run(main())
"""


def _run(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout.strip().rpartition("\n")[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCEOPS_")}
    return {**clean, "INFERENCEOPS_DATA_DIR": str(tmp_path / "data"),
            "INFERENCEOPS_LOG_LEVEL": "warning"}


def test_the_main_process_preloads_what_workers_share_and_nothing_else(
        env: dict[str, str]) -> None:
    seen = json.loads(_run(_MAIN, env))
    assert seen["app"] and seen["store"]  # what every worker needs is shared from here
    assert seen["held"] == []


def test_an_idle_worker_is_ready_without_the_admin_api_and_loads_it_on_demand(
        env: dict[str, str]) -> None:
    _run(_PREPARE, env)  # another process migrates and bootstraps, as `serve` does
    seen = json.loads(_run(_WORKER, env))
    assert seen["idle"]["startup"] == "lifespan.startup.complete" and seen["idle"]["ready"]
    assert seen["idle"]["held"] == []
    assert seen["after"] == {"readyz": 200, "openapi": 200, "title": "InferenceOps admin API",
                             "fastapi": True}
