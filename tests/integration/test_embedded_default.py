"""A fresh start with nothing configured: the embedded demo platform and a generated key.

Proves ``inferenceops serve`` with no ``--config`` and no
``INFERENCEOPS_ADMIN_KEY`` prints its base URL and a new ``sk-io-`` key, that
the key works with the SDK for ``demo-chat`` (plain and streamed) and
``demo-embed``, and that a restart on the same data folder keeps the key
working without printing it again. The key is written nowhere in clear: only
its keyed hash is stored; the platform secret is a 0600 file in the folder.
"""

from __future__ import annotations

import json
import re
import stat
import urllib.request
from pathlib import Path

import openai
import pytest

from tests.integration._harness import SpawnGateway

pytestmark = pytest.mark.integration

KEY_LINE = re.compile(r"admin key: (sk-io-[A-Za-z0-9_-]{20,})")


def _check_serves(base_url: str, key: str) -> None:
    with openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30) as sdk:
        assert {m.id for m in sdk.models.list()} == {"demo-chat", "demo-embed"}
        reply = sdk.chat.completions.create(model="demo-chat", max_tokens=4,
                                            messages=[{"role": "user", "content": "hello"}])
        assert reply.choices[0].message.content
        chunks = list(sdk.chat.completions.create(
            model="demo-chat", max_tokens=4, stream=True,
            messages=[{"role": "user", "content": "hello"}]))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        vectors = sdk.embeddings.create(model="demo-embed", input=["a", "b"],
                                        encoding_format="float")
        assert len(vectors.data) == 2 and len(vectors.data[0].embedding) > 0


def test_fresh_start_prints_url_and_key_and_keeps_the_key(spawn_gateway: SpawnGateway,
                                                          tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh-data"
    first = spawn_gateway(config=None, admin_key=None, data_dir=data_dir, name="fresh")
    banner = first.output()
    assert f"base URL : {first.base_url}" in banner
    assert "embedded default" in banner
    match = KEY_LINE.search(banner)
    assert match, banner
    key = match.group(1)

    secret_file = data_dir / "platform-secret.key"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    for path in data_dir.rglob("*"):  # the key is in no file, in clear
        assert key.encode() not in path.read_bytes(), path
    _check_serves(first.base_url, key)
    # The admin API, not loaded at start, is built by its first request.
    with urllib.request.urlopen(f"{first.origin}/admin/api/v1/openapi.json", timeout=30) as doc:
        assert json.load(doc)["info"]["title"] == "InferenceOps admin API"
    with openai.OpenAI(base_url=first.base_url, api_key="sk-io-wrong", max_retries=0) as bad, \
            pytest.raises(openai.AuthenticationError):
        bad.models.list()
    first.stop()

    again = spawn_gateway(config=None, admin_key=None, data_dir=data_dir, name="restart")
    assert key not in again.output()  # shown once only
    assert "admin key: the one printed at first start" in again.output()
    _check_serves(again.base_url, key)
