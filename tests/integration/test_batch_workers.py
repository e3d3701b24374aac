"""Batches on PostgreSQL run by ``inferenceops worker`` processes (a serving process on
PostgreSQL runs no executor): two workers share the queue through ``FOR UPDATE SKIP LOCKED``;
one is killed with ``kill -9`` mid-batch and the other finishes the batch, the dead worker's
lines claimed again once their lease ends — every request exactly once in the output file.

The workers reach the embedded simulated engine through the serving process (their
``INFERENCEOPS_PORT`` is its port: the simulator is mounted where a process serves HTTP).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest
from sqlalchemy import text

from inferenceops.store import Database
from tests.integration._harness import Gateway, gateway_env
from tests.integration.test_batches import MODEL, _requests, _until
from tests.integration.test_files import _admin, _key, _wait_usable
from tests.support.postgres import Postgres, probe, run_sync
from tests.support.process_groups import LIVE, kill_group

pytestmark = pytest.mark.integration

SECRET = "batch-workers-test-platform-secret-32-bytes-long"
LINES = 40
BATCH_ENV = {"INFERENCEOPS_BATCH_LEASE_S": "3", "INFERENCEOPS_BATCH_POLL_S": "0.2",
             "INFERENCEOPS_BATCH_CONCURRENCY": "2", "INFERENCEOPS_BATCH_CLAIM": "2"}


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    dsn, reason = run_sync(probe())
    if dsn is None:
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 ({reason})")
    pg = Postgres(dsn)
    name = run_sync(pg.create())
    yield pg.url(name)
    run_sync(pg.drop(name))


def _worker(gw: Gateway, url: str, name: str) -> subprocess.Popen[bytes]:
    log = gw.log_path.parent / f"{name}.log"
    env = gateway_env({"INFERENCEOPS_DATABASE_URL": url, "INFERENCEOPS_SECRET_KEY": SECRET,
                       "INFERENCEOPS_PORT": str(gw.port), **BATCH_ENV})
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "inferenceops", "worker", "--data-dir",
                                 str(gw.data_dir)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    LIVE.add(proc)
    end = time.monotonic() + 30
    while "worker ready:" not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < end, log.read_text(errors="replace")
        time.sleep(0.05)
    assert "batch-executor" in log.read_text(errors="replace")
    return proc


async def _holds(url: str, pid: int) -> bool:
    """Whether the executor of process ``pid`` holds a line now (its lease owner names it)."""
    db = Database(url)
    try:
        async with db.read() as s:
            return bool((await s.execute(text(
                "SELECT count(*) FROM batch_requests WHERE state = 'running' "
                "AND lease_owner LIKE :owner"), {"owner": f"%:{pid}:%"})).scalar_one())
    finally:
        await db.close()


async def _reruns(url: str) -> int:
    db = Database(url)
    try:
        async with db.read() as s:
            return int((await s.execute(text(
                "SELECT count(*) FROM batch_requests WHERE attempts > 1"))).scalar_one())
    finally:
        await db.close()


async def _billed(url: str) -> dict[str, int]:
    """Batch usage records per request id (a line's is its ``batch_req_…`` id)."""
    db = Database(url)
    try:
        async with db.read() as s:
            rows = (await s.execute(text(
                "SELECT request_id, count(*) FROM usage_records WHERE priority = 'batch' "
                "GROUP BY request_id"))).all()
        return {str(request): int(times) for request, times in rows}
    finally:
        await db.close()


def test_two_workers_share_a_batch_and_one_dies_mid_way(tmp_path: Path, database: str) -> None:
    gw = Gateway(tmp_path, name="serve-pg", env={"INFERENCEOPS_DATABASE_URL": database,
                                                "INFERENCEOPS_SECRET_KEY": SECRET, **BATCH_ENV})
    workers: list[subprocess.Popen[bytes]] = []
    try:
        gw.wait_ready()
        secret, team = _key(gw, "alpha", "a@example.com", ["inference", "batch"])
        _admin(gw, "PUT", f"/grants/{team}/{MODEL}")
        _wait_usable(gw, secret)
        workers = [_worker(gw, database, f"worker-{i}") for i in range(2)]
        client = openai.OpenAI(base_url=gw.base_url, api_key=secret, max_retries=0)
        end = time.monotonic() + 10
        while MODEL not in {m.id for m in client.models.list()}:
            assert time.monotonic() < end
            time.sleep(0.05)
        upload = client.files.create(file=("in.jsonl", _requests(LINES, max_tokens=48)),
                                     purpose="batch")
        batch = client.batches.create(input_file_id=upload.id,
                                      endpoint="/v1/chat/completions", completion_window="1h")
        end = time.monotonic() + 30
        while not run_sync(_holds(database, workers[0].pid)):
            assert time.monotonic() < end, "worker 0 never ran a line"
            time.sleep(0.01)
        os.killpg(workers[0].pid, signal.SIGKILL)  # mid-batch, while it runs a line
        workers[0].wait(10)
        finished = _until(client, batch.id, ("completed", "failed", "expired"), deadline_s=90)
        assert finished.status == "completed", finished
        assert (finished.request_counts.completed, finished.request_counts.failed) == (LINES, 0)
        lines = [orjson.loads(x) for x in
                 client.files.content(finished.output_file_id).content.splitlines()]
        assert sorted(x["custom_id"] for x in lines) == sorted(f"q-{i}" for i in range(LINES))
        assert run_sync(_reruns(database)) >= 1  # the dead worker's lines ran again
        billed = run_sync(_billed(database))  # once each: stored with the line's result
        assert sorted(billed) == sorted(x["id"] for x in lines) and set(billed.values()) == {1}
        finisher = gw.log_path.parent / "worker-1.log"
        end = time.monotonic() + 5  # logged just after the batch's row is final
        while f"batch {batch.id} is completed" not in finisher.read_text(errors="replace"):
            assert time.monotonic() < end, finisher.read_text(errors="replace")
            time.sleep(0.05)
        assert "inferenceops.batch" not in gw.output()  # serving processes on PostgreSQL run none
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            kill_group(proc)
            LIVE.discard(proc)
        gw.stop()
