"""Fuzzing ``POST /v1/batches`` through the app (SQLite and PostgreSQL): any JSON document, any
mix of right and wrong fields, raw bytes. Every answer is a batch (200) or an OpenAI-shaped 4xx
naming what is wrong — never a 500."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.batch.batch_world import World, make_world, request_lines
from tests.unit.conftest import Harness

pytestmark = pytest.mark.usefixtures("backend")

JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
                    | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=80),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=70), inner, max_size=20), max_leaves=30)


@st.composite
def documents(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    doc: dict[str, Any] = {}
    for field, good in (("input_file_id", st.just("FILE")),
                        ("endpoint", st.sampled_from(["/v1/chat/completions", "/v1/embeddings"])),
                        ("completion_window", st.sampled_from(["24h", "1h"])),
                        ("metadata", st.dictionaries(st.text(max_size=64), st.text(max_size=512),
                                                     max_size=16))):
        choice = draw(st.sampled_from(["good", "good", "bad", "absent"]))
        if choice == "good":
            doc[field] = draw(good)
        elif choice == "bad":
            doc[field] = draw(JSON)
    return doc


@pytest.fixture
def world(store_url: str, tmp_path: Any, harness: Harness) -> Any:
    w = make_world(store_url, tmp_path, harness)
    loop = asyncio.get_event_loop()
    w.file_id = loop.run_until_complete(w.upload(request_lines(2)))  # type: ignore[attr-defined]
    yield w
    loop.run_until_complete(w.close())


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=documents(), raw=st.one_of(st.none(), st.binary(max_size=300)))
def test_any_create_body_gets_a_batch_or_a_clean_4xx(world: World, doc: Any,
                                                     raw: bytes | None) -> None:
    if isinstance(doc, dict) and doc.get("input_file_id") == "FILE":
        doc["input_file_id"] = world.file_id  # type: ignore[attr-defined]
    body = raw if raw is not None else orjson.dumps(doc)
    loop = asyncio.get_event_loop()
    answer = loop.run_until_complete(world.post("/v1/batches", body))
    assert answer.status == 200 or 400 <= answer.status < 500, (answer.status, answer.body)
    if answer.status == 200:
        assert answer.json()["object"] == "batch"
    else:
        error = answer.json()["error"]
        assert error["message"] and error["type"] and "code" in error and "param" in error
