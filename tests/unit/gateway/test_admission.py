"""Admission on the data plane, end to end in-process, on both ledgers (memory and real Redis).

gateway app → admission (limits, budgets, queue) → real HTTP → fake engine. The
Redis variants use the Redis at 127.0.0.1:6379 and are skipped, with the reason,
only where none answers.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from tests.support.asgi import request
from tests.unit.conftest import TEST_SECRET, Harness, make_harness, platform_yaml

from inferenceops.admission.control import AdmissionControl
from inferenceops.admission.ledger import Check, CheckKind, Ledger
from inferenceops.admission.memory_ledger import MemoryLedger
from inferenceops.admission.plan import budget_checks
from inferenceops.admission.redis_ledger import RedisLedger
from inferenceops.metering.tokens import TokenCounter, prompt_tokens
from inferenceops.outbox import AuditRecord
from inferenceops.platform import ApiKey, Identity, KeyHasher, Principal, Snapshot
from inferenceops.platform.policy import (
    Budget,
    BudgetRule,
    LimitRule,
    Period,
    Policy,
    Price,
    RateLimit,
    Scope,
)

REDIS_URL = os.environ.get("INFERENCEOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEAM_KEY, OTHER_KEY, BATCH_KEY = "sk-io-team-key", "sk-io-other-key", "sk-io-batch-key"
HASHER = KeyHasher(TEST_SECRET.encode())
CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def auth(secret: str = TEAM_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def team_identity() -> Identity:
    member = Principal("usr_1")
    keys = [(HASHER.digest(TEAM_KEY), ApiKey("key_team", "sk-io-te", member, "team_ml",
                                             frozenset({"inference"}))),
            (HASHER.digest(OTHER_KEY), ApiKey("key_other", "sk-io-ot", member, "team_ml",
                                              frozenset({"inference"}))),
            (HASHER.digest(BATCH_KEY), ApiKey("key_batch", "sk-io-ba", member, "team_ml",
                                              frozenset({"inference"}), background_only=True))]
    return Identity(keys, {"team_ml": ["chat-model", "embed-model", "broken", "stalling"]})


async def redis_ledger() -> RedisLedger:
    # 5 s a call, not the default 0.5: 500 requests on this one test loop (their clients and
    # the fake engine too) on a loaded CI machine once kept Redis replies unread past 0.5 s,
    # and fail-closed 503s are not what these tests are about (test_an_unreachable_redis_* is).
    ledger = RedisLedger(REDIS_URL, prefix=f"test-{uuid.uuid4().hex[:12]}", timeout_s=5.0)
    try:
        await ledger.ping()
    except Exception as exc:  # noqa: BLE001 - reported as the skip reason
        await ledger.close()
        pytest.skip(f"no Redis answers at {REDIS_URL}: {exc}")
    return ledger


@pytest.fixture(params=["memory", "redis"])
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[Ledger]:
    made: Ledger = MemoryLedger() if request.param == "memory" else await redis_ledger()
    yield made
    # The gateway's stop() closes it; closing twice must be harmless.


async def gateway(fake_port: tuple, ledger: Ledger, policy: Policy, yaml_extra: str = "",
                  chat_deployment_extra: str = "") -> Harness:
    upstream, port = fake_port
    yaml = platform_yaml(port, yaml_extra)
    if "name: errors" in yaml_extra:
        yaml = yaml.replace("models:\n", "models:\n  - {name: broken, deployment: errors}\n"
                            "  - {name: stalling, deployment: stalls}\n")
    if chat_deployment_extra:
        yaml = yaml.replace("    timeouts: {first_byte_s: 0.5",
                            f"{chat_deployment_extra}\n    timeouts: {{first_byte_s: 0.5", 1)
    h = await make_harness(yaml, upstream, port)
    state = h.app.state
    await state.admission.ledger.close()  # type: ignore[union-attr]
    state.admission = AdmissionControl(ledger, outbox=state.outbox)
    state.snapshot = Snapshot(state.snapshot.catalog, team_identity(), policy)
    return h


@pytest.fixture
async def stop_later() -> AsyncIterator[list[Harness]]:
    started: list[Harness] = []
    yield started
    for h in started:
        await h.app.state.stop()


async def chat(h: Harness, doc: dict | None = None, key: str = TEAM_KEY, **kwargs):  # type: ignore[no-untyped-def]
    return await request(h.app, "POST", "/v1/chat/completions", body=orjson.dumps(doc or CHAT),
                         headers={**auth(key), **kwargs.pop("headers", {})}, **kwargs)


async def test_requests_per_minute_admit_up_to_the_limit_then_429_with_retry_after(
        fake, ledger, stop_later) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(limits=[LimitRule(Scope.KEY, "*", RateLimit(rpm=3))])
    h = await gateway(fake, ledger, policy)
    stop_later.append(h)
    answers = [await chat(h) for _ in range(4)]
    assert [a.status for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
    assert answers[0].headers["x-ratelimit-remaining-requests"] == "2"
    assert answers[2].headers["x-ratelimit-remaining-requests"] == "0"
    assert answers[0].headers["x-ratelimit-reset-requests"].endswith("s")
    refused = answers[3]
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    assert "requests per minute of this API key" in error["message"]
    assert 50 <= int(refused.headers["retry-after"]) <= 60
    # Another key has its own counter ("*" is per key).
    assert (await chat(h, key=OTHER_KEY)).status == 200


async def test_a_request_whose_max_tokens_alone_exceeds_the_tpm_limit_is_a_400(
        fake, ledger, stop_later) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(limits=[LimitRule(Scope.TEAM, "team_ml", RateLimit(tpm=100))],
                    team_names={"team_ml": "ml"})
    h = await gateway(fake, ledger, policy)
    stop_later.append(h)
    resp = await chat(h, {**CHAT, "max_tokens": 500})
    assert resp.status == 400
    error = resp.json()["error"]
    assert error["code"] == "exceeds_limit" and error["param"] == "max_tokens"
    assert "tokens per minute of team 'ml'" in error["message"]
    ok = await chat(h, {**CHAT, "max_tokens": 10})
    assert ok.status == 200 and ok.headers["x-ratelimit-limit-tokens"] == "100"


async def test_zero_overshoot_500_concurrent_requests_on_a_budget_for_exactly_n(
        fake, ledger, stop_later) -> None:  # type: ignore[no-untyped-def]
    # Output tokens cost 1 unit each and prompts are free: every request costs exactly its
    # max (1 token), so the budget fits exactly N whatever the order of settlements.
    n, unit = 7, 10**9
    policy = Policy(budgets=[BudgetRule(Scope.TEAM, "team_ml", Budget(n * unit, Period.DAILY))],
                    prices={"chat-model": Price.per_token(input=0, output=unit)})
    h = await gateway(fake, ledger, policy)
    stop_later.append(h)
    doc = {**CHAT, "model": "chat-model"}
    answers = await asyncio.gather(*(chat(h, doc, timeout=60) for _ in range(500)))
    statuses = [a.status for a in answers]
    assert statuses.count(200) == n
    assert statuses.count(429) == 500 - n
    refusal = next(a for a in answers if a.status == 429).json()["error"]
    assert refusal["type"] == "insufficient_quota" and refusal["code"] == "budget_exceeded"
    counter = next(c for c in _budget_counters(h))
    assert await ledger.budget_totals(counter) == (n * unit, 0)


def _budget_counters(h: Harness) -> list[str]:
    checks: list = []
    snapshot = h.app.state.snapshot
    key = snapshot.identity.key(HASHER.digest(TEAM_KEY))
    budget_checks(checks, snapshot.policy, key, 0, time.time())
    return [c.counter for c in checks]


async def test_settle_and_release_leave_nothing_reserved_and_charge_exactly_what_was_used(
        fake, ledger, stop_later) -> None:  # type: ignore[no-untyped-def]
    upstream, _ = fake
    upstream.stream_chunks = 3
    unit = 1000
    policy = Policy(budgets=[BudgetRule(Scope.TEAM, "team_ml", Budget(10**15, Period.MONTHLY))],
                    limits=[LimitRule(Scope.TEAM, "team_ml", RateLimit(tpm=10**9, concurrency=100))],
                    prices={name: Price.per_token(input=unit, output=10 * unit)
                            for name in ("chat-model", "broken", "stalling")})
    yaml = ("  - name: errors\n    engine: openai\n    served_model: error-500\n    replicas:\n"
            f"      - url: http://127.0.0.1:{fake[1]}/v1\n"
            "  - name: stalls\n    engine: openai\n    served_model: stall\n    replicas:\n"
            f"      - url: http://127.0.0.1:{fake[1]}/v1\n"
            "    timeouts: {first_byte_s: 5, between_chunks_s: 30, total_s: 60}\n")
    TokenCounter().load()
    h = await gateway(fake, ledger, policy, yaml_extra=yaml)
    stop_later.append(h)
    stream = {**CHAT, "stream": True, "max_tokens": 50}
    jobs = (
        [chat(h, {**CHAT, "max_tokens": 50}) for _ in range(5)]  # usage 3 + 1
        + [chat(h, stream) for _ in range(5)]  # usage 3 + 3, asked on the client's behalf
        + [chat(h, {**CHAT, "model": "broken"}) for _ in range(5)]  # engine 500: nothing used
        + [chat(h, {**stream, "model": "stalling"}, disconnect_after=1) for _ in range(5)]
    )
    answers = await asyncio.gather(*jobs)
    assert [a.status for a in answers[:10]] == [200] * 10
    assert all(a.status == 502 for a in answers[10:15])
    for a in answers[5:10]:
        assert b'"usage"' not in a.body, "the usage chunk we asked for must not reach the client"
    await asyncio.sleep(0.3)  # the disconnected streams notice and settle
    # Stalled streams sent one content delta, then the client left: no usage ever came, so
    # each is charged its prompt, counted with the platform's tokenizer (loaded above, so the
    # count is the tokenizer's and not the byte estimate), plus the one token streamed.
    prompt_estimate = prompt_tokens(stream, "messages", TokenCounter(), size=0)
    expected = (5 * (3 * unit + 1 * 10 * unit) + 5 * (3 * unit + 3 * 10 * unit)
                + 5 * (prompt_estimate * unit + 1 * 10 * unit))
    counter = _budget_counters(h)[0]
    spent, reserved = await ledger.budget_totals(counter)
    assert reserved == 0
    assert spent == expected
    slots = Check(CheckKind.CONCURRENCY, "con:team:team_ml", 100, 0, "concurrency")
    assert [s.used for s in await ledger.read([slots])] == [0]


async def test_a_soft_budget_admits_past_its_limit_and_raises_one_alert(
        fake, ledger, stop_later) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(budgets=[BudgetRule(Scope.KEY, "key_team", Budget(1, Period.DAILY, hard=False))],
                    prices={"chat-model": Price.per_token(input=1, output=1)})
    h = await gateway(fake, ledger, policy)
    stop_later.append(h)
    assert [(await chat(h)).status for _ in range(3)] == [200, 200, 200]
    admission = h.app.state.admission
    alerts, _ = h.app.state.outbox.take(1000)
    alerts = [r for r in alerts if isinstance(r, AuditRecord)]
    assert len(alerts) == 1 and alerts[0].action == "budget.soft_exceeded"
    assert "daily budget of this API key" in alerts[0].after["budget"]
    assert admission.metrics.soft_budget_overruns >= 2
    metrics = await request(h.app, "GET", "/metrics")
    assert b"inferenceops_budget_soft_overruns_total" in metrics.body


async def test_quota_shows_the_callers_own_limits_use_and_budget(fake, ledger, stop_later) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(limits=[LimitRule(Scope.TEAM, "team_ml", RateLimit(rpm=10, tpm=5000)),
                            LimitRule(Scope.MODEL, "chat-model", RateLimit(concurrency=4))],
                    budgets=[BudgetRule(Scope.TEAM, "team_ml", Budget(5 * 10**9, Period.MONTHLY))],
                    prices={"chat-model": Price.per_token(input=10**6, output=10**6)},
                    team_names={"team_ml": "ml"})
    h = await gateway(fake, ledger, policy)
    stop_later.append(h)
    assert (await chat(h)).status == 200
    quota = (await request(h.app, "GET", "/v1/quota", headers=auth())).json()
    assert quota["object"] == "quota" and quota["key"]["id"] == "key_team"
    limits = {(item["scope"], item["limit"]): item for item in quota["limits"]}
    assert limits[("team", "requests_per_minute")]["used"] == 1
    assert limits[("team", "requests_per_minute")]["remaining"] == 9
    assert limits[("team", "tokens_per_minute")]["used"] == 4  # settled to the engine's usage
    assert limits[("model", "concurrent_requests")]["used"] == 0
    (budget,) = quota["budgets"]
    assert budget["limit"] == "5" and budget["spent"] == "0.004" and budget["reserved"] == "0"
    assert budget["description"] == "monthly budget of team 'ml'"
    assert budget["period_ends_at"].endswith("T00:00:00Z")
    unauthenticated = await request(h.app, "GET", "/v1/quota")
    assert unauthenticated.status == 401


async def test_a_full_deployment_queue_answers_429_queue_full_with_retry_after(
        fake, ledger, stop_later) -> None:  # type: ignore[no-untyped-def]
    h = await gateway(fake, ledger, Policy(), chat_deployment_extra=(  # 1 slot, nobody may wait
        "    capacity: 1\n    queue: {max_waiting: 0}"))
    stop_later.append(h)
    slow = {**CHAT, "model": "chat-model"}
    upstream, _ = fake
    upstream.chunk_delay_s = 0.2
    first = asyncio.ensure_future(chat(h, {**slow, "stream": True}))
    await asyncio.sleep(0.1)
    second = await chat(h, slow)
    assert (await first).status == 200
    assert second.status == 429
    error = second.json()["error"]
    assert error["code"] == "queue_full" and error["limit"] == "deployment_capacity"
    assert int(second.headers["retry-after"]) >= 1
    assert (await chat(h, slow)).status == 200  # the slot came back


async def test_priority_header_is_validated_and_background_keys_cannot_jump_the_queue(
        fake, stop_later) -> None:  # type: ignore[no-untyped-def]
    h = await gateway(fake, MemoryLedger(), Policy())
    stop_later.append(h)
    bad = await chat(h, headers={"x-inferenceops-priority": "urgent"})
    assert bad.status == 400 and bad.json()["error"]["param"] == "x-inferenceops-priority"
    denied = await chat(h, key=BATCH_KEY, headers={"x-inferenceops-priority": "interactive"})
    assert denied.status == 403
    assert (await chat(h, key=BATCH_KEY)).status == 200
    assert (await chat(h, headers={"x-inferenceops-priority": "background"})).status == 200


@pytest.mark.parametrize("fail_open", [False, True])
async def test_an_unreachable_redis_fails_closed_by_default_or_open_when_configured(
        fake, stop_later, fail_open: bool) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(limits=[LimitRule(Scope.KEY, "*", RateLimit(rpm=100))])
    h = await gateway(fake, MemoryLedger(), policy)
    stop_later.append(h)
    h.app.state.admission = AdmissionControl(RedisLedger("redis://127.0.0.1:1/0", timeout_s=0.3),
                                             fail_open=fail_open)
    resp = await chat(h)
    if fail_open:
        assert resp.status == 200
        assert h.app.state.admission.metrics.fail_open == 1
    else:
        assert resp.status == 503
        assert resp.json()["error"]["code"] == "admission_unavailable"
    assert h.app.state.admission.metrics.ledger_errors == 1
    metrics = (await request(h.app, "GET", "/metrics")).body
    assert b"inferenceops_admission_ledger_errors_total 1" in metrics


async def test_a_request_costing_more_than_the_whole_budget_is_a_400_else_429_until_the_period_ends(
        fake, ledger, stop_later) -> None:  # type: ignore[no-untyped-def]
    unit = 10**9
    policy = Policy(budgets=[BudgetRule(Scope.TEAM, "team_ml", Budget(3 * unit, Period.DAILY))],
                    prices={"chat-model": Price.per_token(input=0, output=unit)},
                    team_names={"team_ml": "ml"})
    h = await gateway(fake, ledger, policy)
    stop_later.append(h)
    never = await chat(h, {**CHAT, "max_tokens": 4})
    assert never.status == 400
    error = never.json()["error"]
    assert error["code"] == "exceeds_budget" and error["param"] == "max_tokens"
    assert "daily budget of team 'ml'" in error["message"]
    assert (await chat(h, {**CHAT, "max_tokens": 2})).status == 200  # settles to 1 token: 1 spent
    assert (await chat(h, {**CHAT, "max_tokens": 2})).status == 200  # 2 spent, 1 left
    later = await chat(h, {**CHAT, "max_tokens": 2})
    assert later.status == 429
    assert later.json()["error"]["code"] == "budget_exceeded"
    assert "has 1 left; this request may cost up to 2" in later.json()["error"]["message"]
    assert 1 <= int(later.headers["retry-after"]) <= 86400  # the end of the UTC day
