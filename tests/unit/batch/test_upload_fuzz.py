"""Fuzzing ``POST /v1/files`` through the whole app (SQLite and PostgreSQL): forms cut short,
bytes inserted or flipped, garbage bodies, any chunking, clients leaving mid-upload. Every
answer is a 200 or an OpenAI-shaped 400/413 (never a 500), and afterwards the folder holds
exactly the files the listing shows — nothing partial, nothing orphaned."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.batch.conftest import Files, call, form, form_headers, lines

pytestmark = pytest.mark.usefixtures("backend")


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    body = form(lines(draw(st.integers(1, 30))),
                purpose=draw(st.sampled_from(["batch", "batch", "fine-tune", None])),
                file_first=draw(st.booleans()))
    kind = draw(st.sampled_from(["keep", "cut", "insert", "flip", "garbage"]))
    at = draw(st.integers(0, len(body)))
    if kind == "cut":
        return body[:at]
    if kind == "insert":
        return body[:at] + draw(st.binary(min_size=1, max_size=40)) + body[at:]
    if kind == "flip" and at < len(body):
        return body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1:]
    if kind == "garbage":
        return draw(st.binary(max_size=500))
    return body


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies(), cuts=st.lists(st.integers(0, 100_000), max_size=6),
       leave=st.booleans())
def test_any_upload_gets_a_clean_answer_and_leaves_only_whole_files(
        files: Files, body: bytes, cuts: list[int], leave: bool) -> None:
    positions = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts)})
    parts = [body[a:b] for a, b in zip(positions, positions[1:], strict=False)] or [b""]
    loop = asyncio.get_event_loop()
    answer = loop.run_until_complete(call(files.app, "POST", "/v1/files", parts=parts,
                                          headers=form_headers("a1"), disconnect=leave))
    if leave:
        assert answer.status == 0
    else:
        assert answer.status in (200, 400, 413), (answer.status, answer.body)
        if answer.status != 200:
            error = orjson.loads(answer.body)["error"]
            assert error["message"] and error["type"] == "invalid_request_error"
    listed = loop.run_until_complete(files.get("/v1/files")).json()["data"]
    assert files.stored() == sorted(f"{f['id']}.jsonl" for f in listed)
