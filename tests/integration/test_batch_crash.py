"""A batch survives ``kill -9`` of the process running it (embedded default: SQLite, the executor
inside ``serve``): after a restart on the same data folder the lines the dead process held are
claimed again once their lease ends, and every request appears exactly once in the output file
and is billed once: a line's usage record is stored in the transaction that records its result,
so the run that was lost with the process left neither behind."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import openai
import orjson
import pytest

from tests.integration._harness import ADMIN_KEY, Gateway
from tests.integration.test_batches import MODEL, _requests, _until
from tests.integration.test_files import _admin, _key, _wait_usable

pytestmark = pytest.mark.integration

LINES = 40
ENV = {"INFERENCEOPS_BATCH_LEASE_S": "3", "INFERENCEOPS_BATCH_POLL_S": "0.2",
       "INFERENCEOPS_BATCH_CONCURRENCY": "2", "INFERENCEOPS_BATCH_CLAIM": "2"}


def _running(data_dir: Path) -> int:
    """Lines an executor holds now (read beside the server: SQLite in WAL mode)."""
    with sqlite3.connect(data_dir / "inferenceops.db", timeout=5) as db:
        (count,) = db.execute("SELECT count(*) FROM batch_requests WHERE state = 'running'"
                              ).fetchone()
    return int(count)


def test_kill_9_mid_batch_then_restart_writes_every_line_once(tmp_path: Path) -> None:
    first = Gateway(tmp_path, name="first", env=ENV).wait_ready()
    try:
        secret, team = _key(first, "alpha", "a@example.com", ["inference", "batch"])
        _admin(first, "PUT", f"/grants/{team}/{MODEL}")
        _wait_usable(first, secret)
        client = openai.OpenAI(base_url=first.base_url, api_key=secret, max_retries=0)
        end = time.monotonic() + 10
        while MODEL not in {m.id for m in client.models.list()}:
            assert time.monotonic() < end
            time.sleep(0.05)
        upload = client.files.create(file=("in.jsonl", _requests(LINES, max_tokens=48)),
                                     purpose="batch")
        batch = client.batches.create(input_file_id=upload.id,
                                      endpoint="/v1/chat/completions", completion_window="1h")
        end = time.monotonic() + 30
        while not _running(first.data_dir):
            assert time.monotonic() < end, "the batch never started"
            time.sleep(0.01)
    finally:
        os.killpg(first.proc.pid, signal.SIGKILL)  # the whole process group, mid-line
        first.proc.wait(10)

    second = Gateway(tmp_path, name="second", env=ENV, admin_key=ADMIN_KEY,
                     data_dir=first.data_dir).wait_ready()
    try:
        again = openai.OpenAI(base_url=second.base_url, api_key=secret, max_retries=0)
        finished = _until(again, batch.id, ("completed", "failed", "expired"), deadline_s=90)
        assert finished.status == "completed", finished
        assert (finished.request_counts.completed, finished.request_counts.failed) == (LINES, 0)
        lines = [orjson.loads(x) for x in
                 again.files.content(finished.output_file_id).content.splitlines()]
        ids = [x["custom_id"] for x in lines]
        assert sorted(ids) == sorted(f"q-{i}" for i in range(LINES))  # each exactly once
        assert all(x["response"]["status_code"] == 200 for x in lines)
        with sqlite3.connect(first.data_dir / "inferenceops.db") as db:
            (rerun,) = db.execute("SELECT count(*) FROM batch_requests WHERE attempts > 1").fetchone()
            billed = db.execute("SELECT request_id, count(*) FROM usage_records "
                                "WHERE priority = 'batch' GROUP BY request_id").fetchall()
        assert rerun >= 1  # lines the dead process held were claimed again after their lease
        assert sorted(request for request, _ in billed) == sorted(x["id"] for x in lines)
        assert {times for _, times in billed} == {1}  # each line billed once, re-run or not
    finally:
        second.stop()
