"""Unit-test fixtures: an in-process fake engine and a gateway app wired to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from tests.support import fake_upstream
from tests.support.fake_upstream import FakeUpstream

from inferenceops.app import bootstrap_identity, build_state
from inferenceops.config.spec import parse_platform
from inferenceops.gateway.app import GatewayApp
from inferenceops.platform import KeyHasher
from inferenceops.settings import Settings

ADMIN_KEY = "sk-unit-test"
TEST_SECRET = "unit-test-platform-secret-of-at-least-32-bytes"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Harness:
    app: GatewayApp
    fake: FakeUpstream
    port: int


def platform_yaml(port: int, extra: str = "") -> str:
    return f"""
deployments:
  - name: fake
    engine: openai
    served_model: ok
    api_key_env: FAKE_UPSTREAM_KEY
    replicas:
      - url: http://127.0.0.1:{port}/v1
    timeouts: {{first_byte_s: 0.5, between_chunks_s: 0.5, total_s: 5}}
  - name: fake-embed
    engine: openai
    served_model: ok
    replicas:
      - url: http://127.0.0.1:{port}/v1
{extra}
models:
  - name: chat-model
    deployment: fake
    aliases: [gpt-alias]
  - name: embed-model
    deployment: fake-embed
    type: embedding
"""


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeUpstream, int]]:
    upstream = FakeUpstream()
    runner, port = await fake_upstream.start(upstream)
    yield upstream, port
    await runner.cleanup()


async def make_harness(yaml_text: str, fake: FakeUpstream, port: int,
                       **settings: object) -> Harness:
    platform = parse_platform(yaml_text, source="test.yaml", loopback_base_url="http://127.0.0.1:1",
                              environ={"FAKE_UPSTREAM_KEY": "sk-upstream-secret"})
    hasher = KeyHasher(TEST_SECRET.encode())
    state = build_state(Settings(**settings), platform, hasher,  # type: ignore[arg-type]
                        bootstrap_identity(hasher, ADMIN_KEY))
    await state.start()
    return Harness(GatewayApp(state), fake, port)


@pytest.fixture
async def harness(fake: tuple[FakeUpstream, int]) -> AsyncIterator[Harness]:
    upstream, port = fake
    h = await make_harness(platform_yaml(port), upstream, port, max_body_bytes=64 * 1024)
    yield h
    await h.app.state.stop()
