"""Shared pieces of the integration tests: the main gateway's platform, checks, and the
store a module's gateway runs on (the default SQLite file, or a scratch PostgreSQL database).

The main platform gives every FakeUpstream behaviour its own deployment and
model (the fake picks its behaviour from the model name the gateway forwards).
The checks assert the OpenAI error shape and the headers every response carries.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from tests.integration._harness import UPSTREAM_KEY_ENV, platform_yaml
from tests.support.postgres import Postgres, probe, run_sync

MAX_BODY_BYTES = 8192
ERROR_BEHAVIOURS = ("error-400", "error-422", "error-429", "error-500", "error-503",
                    "plain-400", "crash")
MAIN_MODELS = frozenset({"chat-ok", "embed-ok", *ERROR_BEHAVIOURS, "stall", "slow-timeout",
                         "slow-ok", "slow-stream", "drip-total", "refused", "retry-ok",
                         "blackhole", "blackhole-retry", "fallback-ok"})
USER = [{"role": "user", "content": "hi"}]


def _openai(name: str, served: str, urls: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "engine": "openai", "served_model": served,
            "replicas": [{"url": u} for u in urls], "api_key_env": UPSTREAM_KEY_ENV, **extra}


def main_platform(fake_url: str, slow_fake_url: str, refused_url: str,
                  blackhole_url: str) -> str:
    """A deployment (and a model) per FakeUpstream behaviour, all with an upstream key.

    ``slow_fake_url`` serves slowly dripping streams (~2 s); ``refused_url``
    refuses connections; ``blackhole_url`` never completes a TCP handshake.
    """
    deployments = [
        _openai("up-ok", "ok", [fake_url]),
        _openai("up-embed", "embed-upstream", [fake_url]),
        *(_openai(b, b, [fake_url]) for b in ERROR_BEHAVIOURS),
        _openai("stall", "stall", [fake_url], timeouts={"between_chunks_s": 0.5}),
        _openai("slow", "slow-2000", [fake_url], timeouts={"first_byte_s": 0.3}),
        _openai("slow-ok", "slow-600", [fake_url]),
        _openai("slow-stream", "ok", [slow_fake_url]),
        _openai("drip-total", "ok", [slow_fake_url], timeouts={"total_s": 0.7}),
        _openai("blackhole", "ok", [blackhole_url], timeouts={"connect_s": 0.3}),
        _openai("blackhole-retry", "ok", [blackhole_url, fake_url], timeouts={"connect_s": 0.3}),
        _openai("refused", "ok", [refused_url], timeouts={"connect_s": 2}),
        _openai("retry", "ok", [refused_url, fake_url]),
    ]
    models = [
        {"name": "chat-ok", "deployment": "up-ok", "aliases": ["gpt-alias", "team/alias"]},
        {"name": "embed-ok", "deployment": "up-embed", "type": "embedding"},
        *({"name": b, "deployment": b} for b in ERROR_BEHAVIOURS),
        {"name": "stall", "deployment": "stall"},
        {"name": "slow-timeout", "deployment": "slow"},
        {"name": "slow-ok", "deployment": "slow-ok"},
        {"name": "slow-stream", "deployment": "slow-stream"},
        {"name": "drip-total", "deployment": "drip-total"},
        {"name": "blackhole", "deployment": "blackhole"},
        {"name": "blackhole-retry", "deployment": "blackhole-retry"},
        {"name": "refused", "deployment": "refused"},
        {"name": "retry-ok", "deployment": "retry"},
        {"name": "fallback-ok", "deployment": "refused", "fallbacks": [{"deployment": "up-ok"}]},
    ]
    return platform_yaml(deployments, models)


def assert_error_body(body: bytes | Mapping[str, Any], *, type_: str | None = None,
                      code: object = None) -> dict[str, Any]:
    """``body`` is ``{"error": {"message", "type", "param", "code", ...}}``; returns the error."""
    doc = orjson.loads(body) if isinstance(body, bytes) else body
    assert isinstance(doc, Mapping) and set(doc) == {"error"}, doc
    error = doc["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    if type_ is not None:
        assert error["type"] == type_, error
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def assert_gateway_headers(headers: Mapping[str, str], request_id: str | None = None) -> None:
    """Every response carries a request id (the client's, if sent) and a sane overhead."""
    got = headers.get("x-request-id")
    assert got, dict(headers)
    if request_id is not None:
        assert got == request_id
    overhead = float(headers["x-inferenceops-overhead-ms"])
    assert overhead >= 0.0


def sse_data(raw: bytes) -> list[str]:
    """The ``data:`` payloads of a server-sent-event stream, in order."""
    events = raw.replace(b"\r\n", b"\n").split(b"\n\n")
    out = []
    for event in events:
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                out.append(line[5:].strip().decode())
    return out


@dataclass
class Store:
    name: str
    env: dict[str, str]
    url: str | None  # None: the default SQLite file in the gateway's data folder


def store_backend(backend: str, secret: str) -> Iterator[Store]:
    """For a module-scoped fixture parametrized over ``sqlite`` and ``postgresql``: the store
    (a scratch PostgreSQL database, dropped afterwards; skipped with the reason when PostgreSQL
    does not answer) and the gateway's environment for it."""
    if backend == "sqlite":
        yield Store("sqlite", {}, None)
        return
    dsn, reason = run_sync(probe())
    if dsn is None:
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 ({reason})")
    pg = Postgres(dsn)
    name = run_sync(pg.create())
    url = pg.url(name)
    yield Store("postgresql", {"INFERENCEOPS_DATABASE_URL": url,
                               "INFERENCEOPS_SECRET_KEY": secret}, url)
    run_sync(pg.drop(name))
