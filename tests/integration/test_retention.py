"""Body retention end to end, on a real server: a team that opted in has its bodies stored
redacted and exported by an auditor's tool; a zero-retention team has nothing written
anywhere — not its prompts, not what its failing engine said, not a file; and the supervised
sweep removes a team's bodies once it no longer keeps them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import requests
import yaml

from tests.integration._harness import ADMIN_KEY, FakeUpstreams, Gateway
from tests.integration._support import _openai
from tests.support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

PREFIX = "/admin/api/v1"
EMAIL = "anna.keeper@example.com"


class Admin:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {ADMIN_KEY}"

    def __call__(self, method: str, path: str, body: Any = None, *, ok: bool = True) -> Any:
        reply = self.session.request(method, f"{self.gw.origin}{PREFIX}{path}", json=body, timeout=30)
        if ok:
            assert reply.status_code < 300, (method, path, reply.status_code, reply.text)
        return reply.json() if reply.content else None

    def team_key(self, name: str, **retention: Any) -> tuple[str, str]:
        """A team (with its retention), granted every model, and a service account's key."""
        team = self("POST", "/teams", {"name": name, **retention})
        for model in ("chat", "broken"):
            self("PUT", f"/grants/{team['id']}/{model}")
        account = self("POST", "/service-accounts", {"team_id": team["id"], "name": f"{name}-bot"})
        key = self("POST", "/keys", {"name": name, "service_account_id": account["id"],
                                     "scopes": ["inference", "batch"]})
        return team["id"], key["secret"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, FakeUpstream]]:
    upstreams = FakeUpstreams()
    fake = FakeUpstream(answer_text=f"I will mail {EMAIL} today")
    url = upstreams.serve(fake)
    config = yaml.safe_dump({
        "deployments": [_openai("up", "ok", [url]), _openai("broken", "echo-prompt-500", [url])],
        "models": [{"name": "chat", "deployment": "up"}, {"name": "broken", "deployment": "broken"}]},
        sort_keys=False)
    gw = Gateway(tmp_path_factory.mktemp("retention"), config=config, name="retention",
                 env={"INFERENCEOPS_RETENTION_SWEEP_S": "0.5",
                      "INFERENCEOPS_SNAPSHOT_REFRESH_S": "0.5"}).wait_ready()
    try:
        yield gw, fake
    finally:
        gw.stop()
        upstreams.close()


def sdk(gw: Gateway, secret: str) -> openai.OpenAI:
    """A client for ``secret``, once the data plane's snapshot knows the key."""
    client = openai.OpenAI(base_url=gw.base_url, api_key=secret, max_retries=0, timeout=30)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.models.list()
            return client
        except openai.AuthenticationError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def until(check: Any, what: str, deadline_s: float = 20) -> Any:
    end = time.monotonic() + deadline_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < end, f"{what}: not within {deadline_s} s"
        time.sleep(0.2)


def test_a_keeping_team_has_its_bodies_stored_redacted_exported_and_swept_when_it_stops(
        served: tuple[Gateway, FakeUpstream], tmp_path: Path) -> None:
    gw, _ = served
    admin = Admin(gw)
    team_id, secret = admin.team_key(f"legal-{uuid.uuid4().hex[:6]}", retention="store",
                                     retention_days=7)
    marker = f"keep-marker-{uuid.uuid4().hex}"
    said = [{"role": "user", "content": f"{marker}: write to {EMAIL}"}]
    with sdk(gw, secret) as client:
        whole = client.chat.completions.create(model="chat", messages=said)
        assert EMAIL in (whole.choices[0].message.content or "")  # the caller gets it all
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions
                           .create(model="chat", messages=said, stream=True) if c.choices)
        assert EMAIL in streamed
    kept = until(lambda: (lambda rows: rows if len(rows) == 2 else None)(
        admin("GET", f"/retained-bodies?team_id={team_id}")["data"]), "both bodies stored")
    assert [b["stream"] for b in kept] == [False, True]
    for body in kept:
        text = json.dumps(body)
        assert marker in text and EMAIL not in text and "[EMAIL]" in text
    assert kept[0]["request"]["messages"][0]["content"] == f"{marker}: write to [EMAIL]"
    assert kept[1]["response"]["choices"] == [{"index": 0, "text": "I will mail [EMAIL] today"}]

    exported = tmp_path / "export.jsonl"
    run = subprocess.run([sys.executable, "-m", "inferenceops", "retained-bodies", "export",
                          "--team", team_id, "--output", str(exported), "--url", gw.origin,
                          "--key", ADMIN_KEY], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == [b["request_id"] for b in kept]

    admin("PATCH", f"/teams/{team_id}", {"retention": "none"})
    until(lambda: admin("GET", f"/retained-bodies?team_id={team_id}")["data"] == [],
          "the sweep deleted the bodies of a team that no longer keeps them")


def test_a_zero_retention_team_has_nothing_written_anywhere(
        served: tuple[Gateway, FakeUpstream]) -> None:
    gw, fake = served
    admin = Admin(gw)
    team_id, secret = admin.team_key(f"health-{uuid.uuid4().hex[:6]}", retention="zero")
    marker = f"zero-marker-{uuid.uuid4().hex}"
    with sdk(gw, secret) as client:
        said = [{"role": "user", "content": f"{marker} please"}]
        client.chat.completions.create(model="chat", messages=said)
        list(client.chat.completions.create(model="chat", messages=said, stream=True))
        with pytest.raises(openai.InternalServerError):  # the engine's 500 quotes the request
            client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "x"}],
                                           user=marker)
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.files.create(file=(f"{marker}.jsonl", b"{}\n"), purpose="batch")
        assert refused.value.code == "zero_retention"
    assert sum(marker.encode() in seen.body for seen in fake.requests) == 3  # it did go out
    time.sleep(1.5)  # an outbox flush: what was going to be written is written
    assert admin("GET", f"/retained-bodies?team_id={team_id}")["data"] == []
    log = gw.output()
    assert marker not in log
    assert "(detail not logged: the team is zero-retention)" in log  # the failure, logged bare
    written = [str(p) for p in gw.data_dir.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()]
    assert written == []
