"""The guard stage and the output side of guardrails, through the real pipeline and handler
(a fake engine behind): what a policy blocks never reaches the engine, what it redacts the
engine and the client never see, and the combining rule decides what applies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.support.asgi import request
from tests.support.fake_upstream import FakeUpstream
from tests.unit.conftest import ADMIN_KEY, AUTH, Harness, make_harness, platform_yaml

from inferenceops.config.spec import ConfigError, parse_platform
from inferenceops.control.policy import assemble_policy
from inferenceops.errors import PolicyViolation
from inferenceops.outbox import UsageRecord
from inferenceops.pipeline.facts import RequestFacts
from inferenceops.pipeline.sink import CollectingSink
from inferenceops.platform import Endpoint, Snapshot
from inferenceops.platform.guardrails import ACTIONS, STRICTNESS, GuardrailPolicy, Rule, combine
from inferenceops.store.records import IdentityData

CARD = "4242 4242 4242 4242"
POLICIES = """
guardrails:
  policies:
    - name: pii
      version: 3
      rules:
        - {entities: [card, secret], action: block, applies_to: [input]}
        - {entities: [email], action: redact}
        - {entities: [phone], action: redact, applies_to: [output]}
        - {keywords: [project falcon], action: redact, applies_to: [input]}
        - {keywords: [confidential], action: flag}
        - {entities: [iban], action: block, applies_to: [output]}
    - name: small
      rules:
        - {max_input_tokens: 50, action: block}
    - name: only-chat
      rules:
        - {models: [chat-model], action: block}
  attach:
%s
"""


def chat(content: str, **extra: object) -> bytes:
    return orjson.dumps({"model": "chat-model", "messages": [{"role": "user", "content": content}],
                         **extra})


async def guarded(fake: tuple[FakeUpstream, int], attach: str) -> Harness:
    """The harness serving the platform file's guardrails (as the snapshot feed assembles them)."""
    upstream, port = fake
    text = platform_yaml(port) + POLICIES % attach
    h = await make_harness(text, upstream, port)
    platform = parse_platform(text, source="test.yaml", loopback_base_url="http://127.0.0.1:1",
                              environ={"FAKE_UPSTREAM_KEY": "k"})
    state = h.app.state
    state.snapshot = Snapshot(state.snapshot.catalog, state.snapshot.identity,
                              assemble_policy(platform.policy, None, IdentityData(0, (), (), (), (), (), ())))
    return h


@pytest.fixture
async def pii(fake: tuple[FakeUpstream, int]) -> AsyncIterator[Harness]:
    h = await guarded(fake, "    - {policy: pii}\n    - {policy: small, model: chat-model}")
    yield h
    await h.app.state.stop()


def records(h: Harness) -> list[UsageRecord]:
    taken, _ = h.app.state.outbox.take(10_000)
    return [r for r in taken if isinstance(r, UsageRecord)]


async def test_a_blocked_entity_is_400_content_policy_violation_and_never_reaches_the_engine(
        pii: Harness) -> None:
    reply = await request(pii.app, "POST", "/v1/chat/completions",
                          body=chat(f"my card is {CARD}"), headers=AUTH)
    assert reply.status == 400, reply.body
    error = orjson.loads(reply.body)["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error", "content_policy_violation", "messages")
    assert "payment card" in error["message"] and CARD not in error["message"]
    assert pii.fake.requests == []
    (record,) = records(pii)
    assert (record.error_code, record.cost_nanos, record.status) == (
        "content_policy_violation", 0, 400)


async def test_redacted_input_reaches_the_engine_without_the_entity(pii: Harness) -> None:
    reply = await request(pii.app, "POST", "/v1/chat/completions",
                          body=chat("mail anna@example.com about Project Falcon"), headers=AUTH)
    assert reply.status == 200, reply.body
    sent = orjson.loads(pii.fake.requests[-1].body)["messages"][0]["content"]
    assert sent == "mail [EMAIL] about [REDACTED]"


async def test_flags_and_redactions_are_noted_on_the_request_never_the_text(pii: Harness) -> None:
    state = pii.app.state
    facts = RequestFacts.for_call(Endpoint.CHAT, chat("confidential: ask bob@example.org"),
                                  api_key=ADMIN_KEY)
    sink = CollectingSink()
    await state.pipeline.run(state.snapshot, facts, sink)
    assert sink.status == 200
    assert facts.guardrail_findings == {("custom", "flag"): 1, ("email", "redact"): 1}
    (record,) = records(pii)
    assert record.guardrails == "pii@3,small@1 custom:flag email:redact"  # never the text
    meter = state.pipeline.guardrail_meter
    assert meter.count("pii@3,small@1", "email", "redact") == 1
    metrics = await request(pii.app, "GET", "/metrics", headers=AUTH)
    assert (b'inferenceops_guardrail_findings_total{policies="pii@3,small@1",entity="custom",'
            b'action="flag"} 1') in metrics.body
    assert b"bob@example.org" not in metrics.body


async def test_a_whole_answer_is_redacted_and_a_blocked_one_refused(pii: Harness) -> None:
    pii.fake.answer_text = "call me on +44 20 7946 0958"
    reply = await request(pii.app, "POST", "/v1/chat/completions", body=chat("hi"), headers=AUTH)
    assert reply.status == 200
    assert orjson.loads(reply.body)["choices"][0]["message"]["content"] == "call me on [PHONE]"
    pii.fake.answer_text = "wire it to DE89 3704 0044 0532 0130 00"
    refused = await request(pii.app, "POST", "/v1/chat/completions", body=chat("hi"), headers=AUTH)
    assert refused.status == 400
    assert orjson.loads(refused.body)["error"]["code"] == "content_policy_violation"
    assert b"DE89" not in refused.body
    last = records(pii)[-1]
    assert last.error_code == "content_policy_violation" and last.completion_tokens > 0  # it ran


async def test_a_stream_is_redacted_across_chunks_and_its_usage_still_counted(pii: Harness) -> None:
    pii.fake.answer_text = "reach me at +44 20 7946 0958 or later"  # 3 characters a chunk
    reply = await request(pii.app, "POST", "/v1/chat/completions",
                          body=chat("hi", stream=True), headers=AUTH)
    assert reply.status == 200
    text = "".join(
        c["delta"].get("content") or ""
        for e in reply.body.split(b"\n\n") if e.startswith(b"data: {")
        for c in orjson.loads(e[6:])["choices"])
    assert text == "reach me at [PHONE] or later"
    assert records(pii)[-1].tokens_reported  # the engine's usage chunk went through the chain


async def test_a_blocked_entity_ends_the_stream_with_an_error_event(pii: Harness) -> None:
    pii.fake.answer_text = "the account is DE89 3704 0044 0532 0130 00, thanks"
    reply = await request(pii.app, "POST", "/v1/chat/completions",
                          body=chat("hi", stream=True), headers=AUTH)
    events = [e for e in reply.body.split(b"\n\n") if e.startswith(b"data: {")]
    assert orjson.loads(events[-1][6:])["error"]["code"] == "content_policy_violation"
    assert b"0532" not in reply.body


async def test_size_and_model_rules_block_with_the_param_named(fake: tuple[FakeUpstream, int]) -> None:
    h = await guarded(fake, "    - {policy: small}\n    - {policy: only-chat}")
    try:
        long = await request(h.app, "POST", "/v1/chat/completions", body=chat("word " * 200),
                             headers=AUTH)
        assert long.status == 400 and orjson.loads(long.body)["error"]["param"] == "messages"
        embed = await request(h.app, "POST", "/v1/embeddings", headers=AUTH,
                              body=orjson.dumps({"model": "embed-model", "input": "hi"}))
        error = orjson.loads(embed.body)["error"]
        assert (embed.status, error["code"], error["param"]) == (
            400, "content_policy_violation", "model")
    finally:
        await h.app.state.stop()


async def test_a_policy_attached_elsewhere_does_not_apply(fake: tuple[FakeUpstream, int]) -> None:
    h = await guarded(fake, "    - {policy: pii, model: embed-model}\n"
                            "    - {policy: pii, key: key_of_someone_else}")
    try:
        reply = await request(h.app, "POST", "/v1/chat/completions",
                              body=chat(f"my card is {CARD}"), headers=AUTH)
        assert reply.status == 200
    finally:
        await h.app.state.stop()


@pytest.mark.parametrize(("section", "message"), [
    ("    - name: x\n      rules: [{entities: [passport], action: block}]", "entities"),
    ("    - name: x\n      rules: [{entities: [card], regex: 'a', action: block}]", "exactly one"),
    ("    - name: x\n      rules: [{regex: '(', action: block}]", "not a regular expression"),
    ("    - name: x\n      rules: [{max_input_tokens: 5, action: redact}]", "flag or block"),
])
def test_bad_policies_are_refused_at_start_naming_the_field(section: str, message: str) -> None:
    text = platform_yaml(1) + f"guardrails:\n  policies:\n{section}\n"
    with pytest.raises(ConfigError) as info:
        parse_platform(text, source="t.yaml", loopback_base_url="http://127.0.0.1:1",
                       environ={"FAKE_UPSTREAM_KEY": "k"})
    assert message in str(info.value) and "guardrails" in str(info.value)


def test_an_attachment_to_an_undefined_policy_is_refused() -> None:
    text = platform_yaml(1) + "guardrails:\n  attach:\n    - {policy: nope}\n"
    with pytest.raises(ConfigError, match="not one of the policies"):
        parse_platform(text, source="t.yaml", loopback_base_url="http://127.0.0.1:1",
                       environ={"FAKE_UPSTREAM_KEY": "k"})


_ENTITY_RULES = st.lists(st.tuples(st.sampled_from(["card", "email", "iban", "secret"]),
                                   st.sampled_from(ACTIONS)), min_size=1, max_size=4)


@given(st.lists(_ENTITY_RULES, min_size=1, max_size=5), st.randoms())
def test_combining_is_strictest_wins_whatever_the_order(policies: list[list[tuple[str, str]]],
                                                        rng: object) -> None:
    built = [GuardrailPolicy(f"p{i}", 1, tuple(Rule("entities", a, frozenset({"input"}),
                                                    entities=frozenset({e})) for e, a in rules))
             for i, rules in enumerate(policies)]
    shuffled = list(built)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    together = combine(built).entity_actions["input"]
    assert together == combine(shuffled).entity_actions["input"]
    for entity in {e for rules in policies for e, _ in rules}:
        strictest = max((a for rules in policies for e, a in rules if e == entity),
                        key=STRICTNESS.__getitem__)
        assert together.get(entity, "allow") == strictest
    for policy in built:  # adding policies never loosens what one of them says
        alone = combine([policy]).entity_actions["input"]
        assert all(STRICTNESS[together.get(e, "allow")] >= STRICTNESS[a] for e, a in alone.items())


async def test_a_batch_line_gets_the_same_policies(pii: Harness) -> None:
    """The executor runs a line as the batch's key through the same pipeline: blocked and
    redacted exactly as the interactive request is."""
    state = pii.app.state
    key = next(k for k in state.snapshot.identity.keys() if k.team_id is None)  # noqa: SIM118 (not a dict)
    blocked = RequestFacts.for_batch_line(Endpoint.CHAT, chat(f"card {CARD}"), key, "line-1")
    with pytest.raises(PolicyViolation):
        await state.pipeline.run(state.snapshot, blocked, CollectingSink())
    assert blocked.guardrail_findings == {("card", "block"): 1}
    redacted = RequestFacts.for_batch_line(Endpoint.CHAT, chat("mail anna@example.com"), key,
                                           "line-2")
    sink = CollectingSink()
    await state.pipeline.run(state.snapshot, redacted, sink)
    assert sink.status == 200
    assert orjson.loads(pii.fake.requests[-1].body)["messages"][0]["content"] == "mail [EMAIL]"
    for facts in (blocked, redacted):  # handed to the executor, to be stored with the line
        assert facts.usage_record is not None and facts.usage_record.priority == "batch"
    assert blocked.usage_record is not None and blocked.usage_record.guardrails is not None
