"""``GET /v1/usage`` through the real gateway app: whose usage a key asks for, and nothing more.

The store side is a recording ``UsageSource`` here (``tests/unit/control/test_usage_reads.py``
reads real rollups): what matters at the edge is the query the handler builds — a team key
asks for its team, a key without a team for its own lineage, always by model — that no
parameter can change that (anything but from, to, granularity and model is a 400 naming it,
and the source is never asked), and that bad input is a 400 in the OpenAI shape.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support.asgi import Response, request
from tests.unit.conftest import TEST_SECRET, Harness

from inferenceops.errors import Unavailable
from inferenceops.metering.reports import UsageQuery, UsageReport, UsageRow, UsageScope
from inferenceops.platform import ApiKey, Identity, KeyHasher, Principal, Snapshot

HASHER = KeyHasher(TEST_SECRET.encode())
TEAM_A, TEAM_B, SOLO = "sk-usage-team-a", "sk-usage-team-b", "sk-usage-solo"
DAY = datetime(2026, 12, 3, tzinfo=UTC)


class Recording:
    """A usage source that answers one canned row and remembers every query."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.queries: list[UsageQuery] = []
        self.fail = fail

    async def report(self, query: UsageQuery) -> UsageReport:
        if self.fail is not None:
            raise self.fail
        self.queries.append(query)
        return UsageReport(query, (UsageRow(DAY, ("chat-model",), (2, 30, 12, 4, 1, 0, 1500)),),
                           DAY + timedelta(hours=30))


def with_query(app: Any) -> Any:
    """The app, taking ``?…`` off the path into the query string (the test driver sends none)."""
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path, _, query = scope["path"].partition("?")
        await app({**scope, "path": path, "raw_path": path.encode(),
                   "query_string": query.encode()}, receive, send)
    return wrapped


@pytest.fixture
def source(harness: Harness) -> Recording:
    state = harness.app.state
    member, root = Principal("usr_a"), Principal("usr_root", platform_role="platform-admin")
    keys = [(HASHER.digest(TEAM_A), ApiKey("key_a", "sk-usage", member, "team_a", frozenset({"inference"}))),
            (HASHER.digest(TEAM_B), ApiKey("key_b", "sk-usage", member, "team_b", frozenset({"inference"}))),
            (HASHER.digest(SOLO), ApiKey("key_solo2", "sk-usage", root, None, frozenset({"inference"}),
                                         meter_id="key_solo1"))]
    state.snapshot = Snapshot(state.snapshot.catalog, Identity(keys, {"team_a": ["chat-model"]}),
                              state.snapshot.policy)
    recording = Recording()
    state.usage = recording
    return recording


async def get(h: Harness, query: str = "", secret: str | None = TEAM_A) -> Response:
    headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
    return await request(with_query(h.app), "GET", f"/v1/usage{query}", headers=headers)


async def test_a_team_key_asks_for_its_team_by_day_and_model(harness: Harness,
                                                             source: Recording) -> None:
    before = datetime.now(UTC)
    reply = await get(harness)
    assert reply.status == 200, reply.body
    (query,) = source.queries
    assert query.scope == UsageScope(teams=frozenset({"team_a"}))
    assert (query.group_by, query.granularity, query.model) == (("model",), "day", None)
    assert query.end - query.start == timedelta(days=30) and query.end > before
    doc = reply.json()
    assert (doc["object"], doc["scope"], doc["team_id"]) == ("usage", "team", "team_a")
    assert doc["key"] == {"id": "key_a", "prefix": "sk-usage"} and doc["currency"] == "USD"
    assert doc["data"] == [{"start": "2026-12-03T00:00:00+00:00", "model": "chat-model",
                            "requests": 2, "prompt_tokens": 30, "completion_tokens": 12,
                            "cached_tokens": 4, "estimated_requests": 1, "errors": 0,
                            "cost_nanos": 1500, "cost": "0.0000015"}]
    assert doc["totals"]["requests"] == 2 and doc["current_to"] == "2026-12-04T06:00:00+00:00"
    assert "group_by" not in doc and doc["filters"] == {}


async def test_a_key_without_a_team_asks_for_its_own_lineage(harness: Harness,
                                                             source: Recording) -> None:
    reply = await get(harness, "?granularity=hour&from=2026-12-03T10:15:00Z&to=2026-12-03T12:00:00Z"
                      "&model=chat-model", secret=SOLO)
    assert reply.status == 200, reply.body
    (query,) = source.queries
    assert query.scope == UsageScope(lineages=frozenset({"key_solo1"}))
    assert (query.start, query.end) == (datetime(2026, 12, 3, 10, tzinfo=UTC),
                                        datetime(2026, 12, 3, 12, tzinfo=UTC))
    assert query.model == "chat-model" and reply.json()["scope"] == "key"
    assert reply.json()["team_id"] is None


@pytest.mark.parametrize("query", ["?team_id=team_b", "?key_id=key_b", "?group_by=team",
                                   "?scope=everything", "?model=m&team_id=team_b", "?Team_id=x"])
async def test_nothing_in_the_query_widens_the_scope(harness: Harness, source: Recording,
                                                     query: str) -> None:
    reply = await get(harness, query)
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] in query
    assert source.queries == []  # the store was never asked


@pytest.mark.parametrize(("query", "param"), [
    ("?from=last-week", "from"), ("?to=2026-12-01T10:00:00", "to"),
    ("?from=2026-12-05&to=2026-12-01", "to"), ("?granularity=minute", "granularity"),
    ("?granularity=hour&from=2026-10-01&to=2026-12-01", "from"),
    ("?from=2026-12-01&from=2026-12-02", "from"), ("?model=a%00b", "model"),
])
async def test_bad_input_is_a_400_naming_the_parameter(harness: Harness, source: Recording,
                                                       query: str, param: str) -> None:
    reply = await get(harness, query)
    assert reply.status == 400, reply.body
    assert reply.json()["error"]["param"] == param and source.queries == []


async def test_too_many_parameters_are_refused(harness: Harness, source: Recording) -> None:
    reply = await get(harness, "?" + "&".join(f"model=m{i}" for i in range(40)))
    assert reply.status == 400 and source.queries == []


async def test_only_a_known_key_asks(harness: Harness, source: Recording) -> None:
    assert (await get(harness, secret=None)).status == 401
    assert (await get(harness, secret="sk-unknown")).status == 401
    post = await request(harness.app, "POST", "/v1/usage", headers={"Authorization": f"Bearer {TEAM_A}"})
    assert post.status == 405 and source.queries == []


async def test_no_store_or_a_failing_one_is_503(harness: Harness, source: Recording) -> None:
    harness.app.state.usage = Recording(Unavailable("down", code="usage_unavailable"))
    reply = await get(harness)
    assert reply.status == 503 and reply.json()["error"]["code"] == "usage_unavailable"
    harness.app.state.usage = None  # a process built without a store
    reply = await get(harness, secret=SOLO)
    assert reply.status == 503 and reply.json()["error"]["code"] == "usage_unavailable"
