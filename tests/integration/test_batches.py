"""The Batch API through a real ``serve`` process (embedded default: SQLite, the simulated engine,
one in-process executor), driven by the official openai SDK unchanged.

Proves: ``files.create`` → ``batches.create`` → polling ``batches.retrieve`` until ``completed``
→ ``files.content(output_file_id)`` holds one line per input line with the engine's answers;
``batches.list`` pages; ``batches.cancel`` ends a batch as ``cancelled``; a line whose model the
team is not granted fails the batch naming the line; another team's key gets 404.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from tests.integration._harness import Gateway
from tests.integration.test_files import Setup, _admin, _key, _wait_usable

pytestmark = pytest.mark.integration

MODEL = "demo-chat"


def _requests(count: int, model: str = MODEL, max_tokens: int = 4) -> bytes:
    return b"".join(orjson.dumps({
        "custom_id": f"q-{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": model, "max_tokens": max_tokens,
                 "messages": [{"role": "user", "content": f"question {i}"}]}}) + b"\n"
        for i in range(count))


def _until(client: openai.OpenAI, batch_id: str, statuses: tuple[str, ...],
           deadline_s: float = 60) -> Any:
    end = time.monotonic() + deadline_s
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < end, f"batch still {batch.status} after {deadline_s}s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    gw = Gateway(tmp_path_factory.mktemp("batches"), name="batches")
    try:
        gw.wait_ready()
        a1, team_a = _key(gw, "alpha", "a1@example.com", ["inference", "batch"])
        b, _ = _key(gw, "beta", "b@example.com", ["inference", "batch"])
        _admin(gw, "PUT", f"/grants/{team_a}/{MODEL}")
        keys = {"a1": a1, "b": b}
        for secret in keys.values():
            _wait_usable(gw, secret)
        yield Setup(gw, keys)
    finally:
        gw.stop()


def _wait_granted(client: openai.OpenAI) -> None:
    end = time.monotonic() + 10
    while MODEL not in {m.id for m in client.models.list()}:
        assert time.monotonic() < end, "the grant never reached the snapshot"
        time.sleep(0.05)


def test_the_sdk_runs_a_batch_to_its_output_file(setup: Setup) -> None:
    with setup.client("a1") as client:
        _wait_granted(client)
        upload = client.files.create(file=("in.jsonl", _requests(6)), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h", metadata={"run": "it"},
                                      output_expires_after={"anchor": "created_at",
                                                            "seconds": 7200})
        assert batch.object == "batch" and batch.status == "in_progress"
        assert batch.request_counts is not None and batch.request_counts.total == 6
        done = _until(client, batch.id, ("completed", "failed", "expired"))
        assert done.status == "completed", done
        assert (done.request_counts.completed, done.request_counts.failed) == (6, 0)
        assert done.error_file_id is None and done.metadata == {"run": "it"}
        lines = [orjson.loads(x) for x in
                 client.files.content(done.output_file_id).content.splitlines()]
        assert [x["custom_id"] for x in lines] == [f"q-{i}" for i in range(6)]
        for line in lines:
            assert line["error"] is None and line["response"]["status_code"] == 200
            assert line["response"]["body"]["choices"][0]["message"]["content"]
            assert line["response"]["body"]["usage"]["completion_tokens"] > 0
        output = client.files.retrieve(done.output_file_id)
        assert output.purpose == "batch_output"
        assert output.expires_at == output.created_at + 7200  # output_expires_after
        assert batch.id in [b.id for b in client.batches.list(limit=1)]
    with setup.client("b") as other, pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)


def test_the_sdk_cancels_a_batch(setup: Setup) -> None:
    with setup.client("a1") as client:
        _wait_granted(client)
        upload = client.files.create(file=("many.jsonl", _requests(300, max_tokens=64)),
                                     purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="1h")
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled")
        started = time.monotonic()
        done = _until(client, batch.id, ("cancelled",), deadline_s=30)
        assert time.monotonic() - started < 10 and done.cancelled_at is not None
        assert done.request_counts.completed < 300


def test_a_model_the_team_may_not_use_fails_the_batch_naming_the_line(setup: Setup) -> None:
    with setup.client("b") as client:
        upload = client.files.create(file=("x.jsonl", _requests(2)), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        assert batch.status == "failed" and batch.errors is not None
        assert [(e.code, e.line) for e in batch.errors.data or []] == [
            ("model_not_found", 1), ("model_not_found", 2)]


def test_an_output_expiry_openai_would_refuse_is_400_naming_it(setup: Setup) -> None:
    with setup.client("a1") as client:
        upload = client.files.create(file=("x.jsonl", _requests(1)), purpose="batch")
        with pytest.raises(openai.BadRequestError) as refused:
            client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                  completion_window="24h",
                                  output_expires_after={"anchor": "created_at", "seconds": 60})
        assert refused.value.param == "output_expires_after.seconds"


def test_a_large_file_is_validating_then_checked_by_the_executor(setup: Setup) -> None:
    """More than INFERENCEOPS_BATCH_VALIDATE_INLINE_LINES (1,000) requests: the create call
    answers ``validating`` at once, as OpenAI's, and the executor's check fails the batch
    naming the lines exactly as a check inside the create call would."""
    with setup.client("b") as client:
        upload = client.files.create(file=("big.jsonl", _requests(1001)), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        assert batch.status == "validating" and batch.errors is None
        assert batch.request_counts is not None and batch.request_counts.total == 0
        done = _until(client, batch.id, ("failed",), deadline_s=30)
        assert done.errors is not None and done.failed_at is not None
        assert [(e.code, e.line) for e in done.errors.data or []] == [
            ("model_not_found", line) for line in range(1, 101)]  # the first 100 listed
