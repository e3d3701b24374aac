"""Property-based fuzzing of the whole admin API from its own OpenAPI document (schemathesis).

The real server (``inferenceops serve``, started as the other integration tests start it) runs
on SQLite and on a scratch PostgreSQL database, with the bootstrap admin key. Every operation
of the admin API's OpenAPI document gets generated requests, valid and invalid
(``generation.mode = all``: wrong types, missing and unknown fields, boundary values, …),
sent with that key. For every response:

* no 5xx (``not_a_server_error``);
* an error is the OpenAI error document, ``{"error": {"message", "type", "param", "code"}}``
  with a non-empty message, type and code (``error_document``);
* every response conforms to the document — successes to their schema, errors to ``Error``,
  which ``admin.api._openapi`` puts on every operation (``response_schema_conformance``);

and after the run the server still serves (``test_server_still_serves_after_fuzzing``).

Which operations: the document is built from the code under test at collection (schemathesis
makes one test per operation then, before any server runs); ``test_the_server_serves_this_document``
proves the running server serves exactly that document, so a route added anywhere is fuzzed.

Where the values come from, beyond schemathesis's own (``_vary``): since random ids only ever
reach "404", a few real teams, users, keys, catalog rows and admission rules are made first
and their ids put in the matching path, query and body fields half of the time (DELETEs take
theirs from a separate set, so the others keep finding theirs); and a quarter of the other
parameters, top-level body fields and platform files get a known-hostile value of their type —
NUL characters (which schemathesis never puts in a path), integers past 64 bits, amounts past
``decimal``'s range, instants past the calendar in UTC, YAML nested 3000 deep: every class of
issue 8's findings.

Bounds: ``MAX_EXAMPLES`` generated cases per operation (plus schemathesis's coverage cases),
derandomised, so a run is reproducible and takes about a minute per backend on 2 cores.
``INFERENCEOPS_ADMIN_FUZZ_EXAMPLES=200`` (and ``INFERENCEOPS_ADMIN_FUZZ_SEED``) for a deeper run.
"""

from __future__ import annotations

import json
import os
import random
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from inferenceops.admin.api import PREFIX, build_admin_app
from inferenceops.platform.keys import KeyHasher
from inferenceops.store import Database
from tests.integration._harness import ADMIN_KEY, Gateway
from tests.support.postgres import Postgres, probe, run_sync

pytestmark = pytest.mark.integration

MAX_EXAMPLES = int(os.environ.get("INFERENCEOPS_ADMIN_FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("INFERENCEOPS_ADMIN_FUZZ_SEED", "8"))
#: How often a field named like a seeded object's id gets a real one.
REAL_ID_PROBABILITY = 0.5
#: How often any other parameter or top-level body field gets a hostile value of its type.
HOSTILE_PROBABILITY = 0.25
SECRET = "integration-platform-secret-for-the-admin-fuzzer"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}

#: One or two values per class of issue 8's findings, by the JSON type they replace.
HOSTILE: dict[type, list[Any]] = {
    str: ["\x00", "a\x00b", "9" * 30, "1e999999", "9999-12-31T23:59:59-14:00",
          "0001-01-01T00:00:00+14:00", "[" * 3000 + "]" * 3000],
    int: [2**63, -(2**63) - 1, 10**30],
    float: [1e308, -1e308],
}


# ---- the server, with something to find ------------------------------------------------------

@dataclass
class Seeded:
    """Ids of the objects made before fuzzing: ``ids[pool][kind]``; pool "delete" for DELETEs."""

    ids: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def add(self, pool: str, kind: str, value: str) -> None:
        self.ids.setdefault(pool, {}).setdefault(kind, []).append(value)


def _session() -> requests.Session:
    session = requests.Session()
    session.headers.update(AUTH)
    return session


def _call(session: requests.Session, gw: Gateway, method: str, path: str, body: Any = None) -> Any:
    response = session.request(method, f"{gw.origin}{PREFIX}{path}", json=body, timeout=30)
    assert response.status_code < 300, (method, path, response.status_code, response.text)
    return response.json() if response.content else None


def _seed(gw: Gateway) -> Seeded:
    """Two sets of a team with an owner, a service account, a key, a grant, catalog rows (a
    model with a price to come), a limit and a budget: one set for DELETEs, one for the rest."""
    seeded = Seeded()
    with _session() as session:
        for pool in ("keep", "delete"):
            tag = uuid.uuid4().hex[:6]
            team = _call(session, gw, "POST", "/teams", {"name": f"fuzz-{tag}"})
            user = _call(session, gw, "POST", "/users", {"email": f"fuzz-{tag}@example.com"})
            _call(session, gw, "PUT", f"/teams/{team['id']}/members/{user['id']}", {"role": "owner"})
            account = _call(session, gw, "POST", "/service-accounts",
                            {"team_id": team["id"], "name": f"bot-{tag}"})
            key = _call(session, gw, "POST", "/keys", {"name": f"fuzz-{tag}", "team_id": team["id"],
                                                       "user_id": user["id"], "scopes": ["inference"]})
            provider = _call(session, gw, "POST", "/providers", {
                "name": f"fuzz-{tag}", "base_url": "https://upstream.example/v1"})
            deployment = _call(session, gw, "POST", "/deployments", {
                "name": f"fuzz-{tag}", "engine": "simulator", "served_model": "m",
                "profile": "test-fast"})
            model = _call(session, gw, "POST", "/models",
                          {"name": f"fuzz-{tag}", "deployment": deployment["name"]})
            _call(session, gw, "PUT", f"/grants/{team['id']}/{model['name']}")
            price = _call(session, gw, "POST", f"/models/{model['id']}/prices", {
                "effective_from": "2999-01-01T00:00:00Z", "input_per_million": "0.5",
                "output_per_million": "1.5", "deployment": deployment["name"]})
            limit = _call(session, gw, "POST", "/limits",
                          {"scope": "team", "team_id": team["id"], "rpm": 100})
            budget = _call(session, gw, "POST", "/budgets", {
                "scope": "team", "team_id": team["id"], "amount": "12.50", "period": "monthly"})
            for kind, value in (("teams", team["id"]), ("users", user["id"]),
                                ("accounts", account["id"]), ("keys", key["id"]),
                                ("providers", provider["id"]), ("provider_names", provider["name"]),
                                ("deployments", deployment["id"]),
                                ("deployment_names", deployment["name"]),
                                ("models", model["id"]), ("model_names", model["name"]),
                                ("prices", price["id"]),
                                ("limits", limit["id"]), ("budgets", budget["id"])):
                seeded.add(pool, kind, value)
    return seeded


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def admin_server(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Seeded]]:
    workdir = tmp_path_factory.mktemp(f"admin-fuzz-{request.param}")
    env = {"INFERENCEOPS_SECRET_KEY": SECRET}
    pg: Postgres | None = None
    if request.param == "postgresql":
        dsn, reason = run_sync(probe())
        if dsn is None:
            pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 ({reason})")
        pg = Postgres(dsn)
        env["INFERENCEOPS_DATABASE_URL"] = pg.url(run_sync(pg.create()))
    gw = Gateway(workdir, env=env, name=f"fuzz-{request.param}")
    try:
        gw.wait_ready()
        yield gw, _seed(gw)
    finally:
        gw.stop()
        if pg is not None:
            for name in list(pg.created):
                run_sync(pg.drop(name))


# ---- the document and the cases ---------------------------------------------------------------

#: Path parameters and body fields that name a seeded object, and the kind they name.
PATH_IDS = {"team_id": "teams", "user_id": "users", "key_id": "keys", "account_id": "accounts",
            "provider_id": "providers", "deployment_id": "deployments", "model_id": "models",
            "model": "model_names", "limit_id": "limits", "budget_id": "budgets",
            "price_id": "prices"}
QUERY_IDS = {"team_id": "teams", "user_id": "users", "key_id": "keys",
             "service_account_id": "accounts"}
BODY_IDS = {"team_id": "teams", "user_id": "users", "key_id": "keys",
            "service_account_id": "accounts", "provider": "provider_names",
            "deployment": "deployment_names", "model": "model_names"}


def _vary(case: Case, seeded: Seeded) -> None:
    """Put seeded ids and hostile values into the generated case (see the module doc).

    Each choice is a function of the generated values, so hypothesis replaying a case (to
    confirm or shrink a failure) makes the same ones.
    """
    ids = seeded.ids["delete" if case.method.upper() == "DELETE" else "keep"]
    rng = random.Random(zlib.crc32(repr((case.method, case.path, case.path_parameters, case.query,
                                         case.body)).encode()))
    for fields, names in ((case.path_parameters, PATH_IDS), (case.query, QUERY_IDS),
                          (case.body, BODY_IDS)):
        if not isinstance(fields, dict):
            continue
        for name in sorted(fields, key=str):
            if name in names and rng.random() < REAL_ID_PROBABILITY:
                fields[name] = rng.choice(ids[names[name]])
            elif type(fields[name]) in HOSTILE and rng.random() < HOSTILE_PROBABILITY:
                fields[name] = rng.choice(HOSTILE[type(fields[name])])
    media_type = case.media_type or ""
    text_body = "yaml" in media_type or media_type.startswith("text/")  # a platform file
    if text_body and rng.random() < HOSTILE_PROBABILITY:
        # As text/plain, sent as it is: schemathesis would send a str as a quoted YAML scalar.
        case.media_type, case.body = "text/plain", rng.choice(HOSTILE[str])


def _document() -> dict[str, Any]:
    """The admin API's OpenAPI document, from the code under test (no server needed)."""
    app = build_admin_app(Database("sqlite+aiosqlite://"), KeyHasher(SECRET.encode()))
    return app.openapi()


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict({
    "seed": SEED,
    # Hypothesis's health checks time generation: on a loaded 2-core machine "too_slow" would
    # fail a run that found nothing.
    "suppress-health-check": ["all"],
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True,
                   "database": "none"},
    # Examples: the document has few. Stateful: no links to follow; real ids are seeded instead.
    # Coverage: every boundary and every missing or wrong-typed parameter, but a wrong method
    # only as TRACE: each method is its own request, and one shows the 405 as well as seven.
    "phases": {"examples": {"enabled": False}, "stateful": {"enabled": False},
               "coverage": {"unexpected-methods": ["TRACE"]}},
}))


# ---- what every answer must be ----------------------------------------------------------------

def error_document(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A 4xx is ``{"error": {"message", "type", "param", "code"}}``, message/type/code non-empty."""
    if response.status_code < 400:
        return None
    try:
        document = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{response.status_code} with a body that is not JSON: "
                             f"{response.content[:300]!r}") from None
    assert isinstance(document, dict) and set(document) == {"error"}, document
    error = document["error"]
    assert isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error), error
    for name in ("message", "type", "code"):
        assert isinstance(error[name], str) and error[name], (name, error)
    assert error["param"] is None or isinstance(error["param"], str), error
    return None


CHECKS = [not_a_server_error, error_document, response_schema_conformance]


def test_the_server_serves_this_document(admin_server: tuple[Gateway, Seeded]) -> None:
    gw, _ = admin_server
    served = requests.get(f"{gw.origin}{PREFIX}/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(DOCUMENT))


#: Past this, the HTTP server (granian's hyper) refuses a request line itself, 414 with no body,
#: before the application sees it: a transport limit, not an answer of the admin API.
URI_LIMIT = 65_534


def refused_by_the_server(response: Any) -> bool:
    request = getattr(response, "request", None)
    return response.status_code == 414 and len(str(getattr(request, "url", ""))) > URI_LIMIT


@schema.parametrize()
def test_no_input_breaks_the_admin_api(case: Case, admin_server: tuple[Gateway, Seeded]) -> None:
    gw, seeded = admin_server
    _vary(case, seeded)
    response = case.call(base_url=gw.origin, headers=AUTH)
    if refused_by_the_server(response):
        assert requests.get(f"{gw.origin}/healthz", timeout=10).status_code == 200
        return
    case.validate_response(response, checks=CHECKS)


def test_server_still_serves_after_fuzzing(admin_server: tuple[Gateway, Seeded]) -> None:
    gw, seeded = admin_server
    assert gw.proc.poll() is None, gw.tail()
    with _session() as session:
        teams = session.get(f"{gw.origin}{PREFIX}/teams?limit=1000", timeout=30)
        assert teams.status_code == 200, teams.text
        assert set(seeded.ids["keep"]["teams"]) <= {t["id"] for t in teams.json()["data"]}
        models = session.get(f"{gw.origin}/v1/models", timeout=30)
        assert models.status_code == 200, models.text
    assert gw.ready()
