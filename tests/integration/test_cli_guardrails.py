"""``inferenceops guardrails …`` against a real server, and what its changes do on the data plane.

One ``inferenceops serve`` (the embedded default: the simulated ``demo-chat``), driven only
through the CLI (each command its own process, as an operator's shell runs it). Proves:

* ``apply -f`` creates policies from the platform file's own ``guardrails:`` syntax, attaches
  them, and reports ``unchanged`` / ``changed`` (a new version) when applied again;
* a blocking policy attached through the API reaches the data plane within the snapshot
  refresh: the next request carrying a card number is 400 ``content_policy_violation``;
  detached, the same request passes again;
* the blocked request is found by ``guardrails records --action block --entity card``
  (the admin API's query by outcome), with no text of the prompt;
* bad input is refused naming the field (an exponential regex: ``rules.0.regex``), an
  attached policy is not deleted, a usage error exits 2.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration._harness import ADMIN_KEY, Gateway, SpawnGateway
from tests.integration.test_cli_admin import cli, ok, ok_json

pytestmark = pytest.mark.integration

MODEL = "demo-chat"
CARD = "please charge 4242 4242 4242 4242 today"
#: The snapshot feed polls every second and is woken at once by this process's own changes.
APPLY_BOUND_S = 5.0
POLICIES = f"""
guardrails:
  policies:
    - name: cards
      version: 9                      # not sent: the server keeps the version
      rules:
        - {{entities: [card, iban], action: block, applies_to: [input]}}
    - name: emails
      rules:
        - {{entities: [email], action: redact}}
  attach:
    - {{policy: cards, model: {MODEL}}}
"""


def chat(gw: Gateway, text: str) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"model": MODEL, "max_tokens": 4,
                       "messages": [{"role": "user", "content": text}]}).encode()
    req = urllib.request.Request(f"{gw.base_url}/chat/completions", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def until(condition: Any, bound_s: float, what: str) -> Any:
    end = time.monotonic() + bound_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {bound_s:g}s")
        time.sleep(0.1)


def test_policies_through_the_cli_reach_the_data_plane(spawn_gateway: SpawnGateway,
                                                       tmp_path: Path) -> None:
    gw = spawn_gateway(name="cli-guardrails")
    assert chat(gw, CARD)[0] == 200  # nothing attached yet

    path = tmp_path / "guardrails.yaml"
    path.write_text(POLICIES, encoding="utf-8")
    applied = ok(gw, "guardrails", "apply", "-f", str(path))
    assert "policy cards@1: created" in applied and "policy emails@1: created" in applied
    assert f"attached cards to model {MODEL}" in applied

    def blocked() -> dict[str, Any] | None:
        status, body = chat(gw, CARD)
        return body["error"] if status == 400 else None
    error = until(blocked, APPLY_BOUND_S, "the attached policy blocks")
    assert (error["code"], error["type"], error["param"]) == (
        "content_policy_violation", "invalid_request_error", "messages")
    assert chat(gw, "nothing to see here")[0] == 200

    again = ok(gw, "guardrails", "apply", "-f", str(path))
    assert "policy cards@1: unchanged" in again
    path.write_text(POLICIES.replace("[card, iban]", "[card, iban, secret]"), encoding="utf-8")
    assert "policy cards@2: changed" in ok(gw, "guardrails", "apply", "-f", str(path))

    listed = {p["name"]: p for p in ok_json(gw, "guardrails", "list")["data"]}
    assert (listed["cards"]["version"], listed["cards"]["source"]) == (2, "api")
    shown = ok_json(gw, "guardrails", "show", "cards")
    assert shown["rules"][0]["entities"] == ["card", "iban", "secret"]
    [attachment] = shown["attachments"]
    assert (attachment["scope"], attachment["model"]) == ("model", MODEL)
    assert "rules:" in ok(gw, "guardrails", "show", "cards")

    # The auditors' query finds the blocked request by its outcome; no text of the prompt.
    def found() -> list[Any]:
        return list(ok_json(gw, "guardrails", "records", "--action", "block", "--entity",
                            "card")["data"])
    records = until(found, 10.0, "the blocked request's usage record")
    assert records[0]["error_code"] == "content_policy_violation"
    assert records[0]["guardrails"].startswith("cards@1 card:block")
    assert "4242" not in json.dumps(records)

    # Refused, naming the field; an attached policy stays; usage errors exit 2.
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies:\n  - name: slow\n    rules:\n"
                   "      - {regex: '(a+)+$', action: block}\n", encoding="utf-8")
    refused = cli("guardrails", "apply", "-f", str(bad), url=gw.origin)
    assert refused.returncode == 1 and "rules.0.regex" in refused.stderr
    assert "exponential" in refused.stderr
    attached = cli("guardrails", "delete", "cards", url=gw.origin)
    assert attached.returncode == 1 and "detach" in attached.stderr
    both = cli("guardrails", "attach", "cards", "--team", "x", "--model", "y", url=gw.origin)
    assert both.returncode == 2
    unknown = cli("guardrails", "attach", "cards", "--key-id", "key_nope", url=gw.origin)
    assert unknown.returncode == 1 and "key_id" in unknown.stderr

    # Attached to the whole platform through the CLI, then detached everywhere: passes again.
    everywhere = ok_json(gw, "guardrails", "attach", "emails")
    assert everywhere["scope"] == "global"
    ok(gw, "guardrails", "detach", attachment["id"])
    until(lambda: chat(gw, CARD)[0] == 200, APPLY_BOUND_S, "the detached policy stops blocking")
    ok(gw, "guardrails", "detach", everywhere["id"])
    assert "deleted guardrail policy cards" in ok(gw, "guardrails", "delete", "cards")
    names = {p["name"] for p in ok_json(gw, "guardrails", "list")["data"]}
    assert names == {"emails"}
