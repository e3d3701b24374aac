"""Bodies are never stored by default: after a real server has answered, failed, streamed,
embedded and blocked requests carrying marker strings, neither a prompt's nor an answer's
text is anywhere in its log or its data folder (the store, its write-ahead log, every other
file) — including the log line of an engine failure whose error body quotes the request.

The Files API's folder (``files/``) is left out: what a team uploads for a batch, and the
outputs it downloads, are kept there on purpose until deleted (docs/batch.md)."""

from __future__ import annotations

import uuid
from pathlib import Path

import openai
import pytest
import yaml

from tests.integration._harness import ADMIN_KEY, FakeUpstreams, Gateway
from tests.integration._support import _openai
from tests.support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

CARD = "4242 4242 4242 4242"


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and "files" not in path.relative_to(root).parts[:1]:
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {needle!r}" for needle in needles
                      if needle in data]
    return found


def test_no_prompt_or_answer_text_is_written_anywhere(tmp_path: Path,
                                                       upstreams: FakeUpstreams) -> None:
    prompt = f"prompt-marker-{uuid.uuid4().hex}"
    answer = f"answer-marker-{uuid.uuid4().hex}"
    fake = FakeUpstream(answer_text=f"here is {answer}")
    url = upstreams.serve(fake)
    config = yaml.safe_dump({
        "deployments": [_openai("up", "ok", [url]), _openai("broken", "echo-prompt-500", [url])],
        "models": [{"name": "chat", "deployment": "up"}, {"name": "broken", "deployment": "broken"},
                   {"name": "embed", "deployment": "up", "type": "embedding"}],
        "guardrails": {"policies": [{"name": "cards", "rules": [
            {"entities": ["card"], "action": "block", "applies_to": ["input"]}]}],
            "attach": [{"policy": "cards"}]}}, sort_keys=False)
    gw = Gateway(tmp_path, config=config, name="no-bodies").wait_ready()
    try:
        with openai.OpenAI(base_url=gw.base_url, api_key=ADMIN_KEY, max_retries=0,
                           timeout=30) as sdk:
            said = [{"role": "user", "content": f"please repeat {prompt}"}]
            done = sdk.chat.completions.create(model="chat", messages=said)
            assert answer in (done.choices[0].message.content or "")
            streamed = "".join(c.choices[0].delta.content or "" for c in sdk.chat.completions
                               .create(model="chat", messages=said, stream=True) if c.choices)
            assert answer[:6] in streamed
            sdk.embeddings.create(model="embed", input=[f"embed {prompt}"])
            with pytest.raises(openai.InternalServerError):  # the engine's 500, as a 502
                sdk.chat.completions.create(model="broken", messages=said)
            with pytest.raises(openai.BadRequestError):  # blocked by the guardrail
                sdk.chat.completions.create(model="chat", messages=[
                    {"role": "user", "content": f"card {CARD} for {prompt}"}])
            with pytest.raises(openai.BadRequestError):  # refused at the edge
                sdk.chat.completions.create(model="chat", messages=said,
                                            temperature=f"hot {prompt}")  # type: ignore[arg-type]
        assert any(prompt.encode() in seen.body for seen in fake.requests)  # it did go out
    finally:
        gw.stop()
    needles = [prompt.encode(), answer.encode(), answer[:24].encode(), CARD.encode()]
    log = gw.output()
    assert "cannot generate for request" not in log or prompt not in log, log[-3000:]
    assert [n for n in needles if n.decode() in log] == [], log[-3000:]
    assert _files_holding(gw.data_dir, needles) == []
    assert (gw.data_dir / "inferenceops.db").exists()  # the store was there to be searched
