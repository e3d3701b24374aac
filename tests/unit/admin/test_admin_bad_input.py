"""Bad input is a 4xx naming the field, never a 500 (issue 8, item 5), on SQLite and PostgreSQL.

One test per finding, each failing on the code before the fix: huge integers in the audit
``after`` cursor, budget amounts past ``decimal``'s range, timestamps at the ends of the
calendar, deeply nested or alias-bombed YAML posted to ``/apply``, NUL characters in any id
or name (PostgreSQL cannot store them), bodies FastAPI cannot decode (which were answered
``400 server_error``), and catalog values a JSON column cannot hold. Then the two nets
behind the API's own checks: the store turns values the database refuses into ``Invalid``,
and the OpenAPI document describes the error shape the API really sends.

Reuses the seeded world of ``test_admin_api`` (its own copy per backend, for this module).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from tests.unit.admin.test_admin_api import V1, Reply, World, call, world

from inferenceops.admin.api._values import BIGINT_MAX, Timestamp
from inferenceops.admin.api.errors import to_api_error
from inferenceops.config.spec.bounded_yaml import MAX_YAML_DEPTH
from inferenceops.store import errors as store_errors
from inferenceops.store import repo
from inferenceops.store.repo.audit import list_audit

pytestmark = pytest.mark.asyncio(loop_scope="module")
__all__ = ["world"]  # the module-scoped fixture, imported so this module gets its own world

END_OF_TIME = "9999-12-31T23:59:59-14:00"  # 9999-12-31T23:59 here is past datetime.max in UTC
START_OF_TIME = "0001-01-01T00:00:00+14:00"  # before datetime.min in UTC


async def _admin(w: World, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                 content_type: str = "application/json") -> Reply:
    return await call(w.app, method, V1 + path.format(**w.ids), body, raw=raw,
                      headers={"content-type": content_type}, secret=w.secrets["admin"])


def _refused(reply: Reply, param: str | None, *, status: int = 422,
             code: str = "invalid_value") -> dict[str, Any]:
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == code, error
    assert error["param"] == param, error
    return error  # type: ignore[no-any-return]


# ---- integers past 64 bits --------------------------------------------------------------------

@pytest.mark.parametrize("after", [str(BIGINT_MAX + 1), "9" * 30])
async def test_an_audit_cursor_past_bigint_is_422(world: World, after: str) -> None:
    _refused(await _admin(world, "GET", f"/audit?after={after}"), "after")


async def test_the_largest_audit_cursor_is_an_empty_page(world: World) -> None:
    reply = await _admin(world, "GET", f"/audit?after={BIGINT_MAX}")
    assert reply.status == 200 and reply.json() == {"data": [], "next_after": None}


async def test_the_store_refuses_an_unbindable_integer_as_invalid(world: World) -> None:
    # The net behind the API's bound: sqlite3 raises a bare OverflowError, asyncpg a DataError.
    with pytest.raises(store_errors.Invalid):
        async with world.db.read() as tx:
            await list_audit(tx, after_seq=2**64)


@pytest.mark.parametrize("field", ["seed", "timeouts"])
async def test_catalog_numbers_a_json_column_cannot_hold_are_422(world: World, field: str) -> None:
    # The store keeps specs as JSON: orjson refuses ints past 64 bits; an infinite float (what
    # stdlib json reads 1e400 as) would be stored as null, and the row never read back.
    value = {"seed": b"1180591620717411303424", "timeouts": b'{"connect_s": 1e400}'}[field]
    raw = (b'{"name": "%s", "engine": "simulator", "served_model": "m", "profile": "test-fast", '
           b'"%s": %s}' % (world.unique("dep").encode(), field.encode(), value))
    error = _refused(await _admin(world, "POST", "/deployments", raw=raw),
                     "seed" if field == "seed" else "timeouts.connect_s")
    assert "finite" in error["message"] or "9223372036854775807" in error["message"]
    deployment = await world.fresh_deployment()
    patch = b'{"%s": %s}' % (field.encode(), value)
    _refused(await _admin(world, "PATCH", f"/deployments/{deployment}", raw=patch),
             "seed" if field == "seed" else "timeouts.connect_s")


# ---- money past decimal's range ---------------------------------------------------------------

@pytest.mark.parametrize("amount", ["1e999999", "-1e999999", 1e308, "9" * 5000])
async def test_a_budget_amount_out_of_range_is_422(world: World, amount: object) -> None:
    body = {"scope": "team", "team_id": world.ids["A"], "amount": amount, "period": "monthly"}
    error = _refused(await _admin(world, "POST", "/budgets", body), "amount")
    assert "at most" in error["message"] or "more than 0" in error["message"]


# ---- the ends of the calendar -----------------------------------------------------------------

@pytest.mark.parametrize("param", ["since", "until"])
@pytest.mark.parametrize("at", [END_OF_TIME, START_OF_TIME])
async def test_audit_times_past_the_calendar_in_utc_are_422(world: World, param: str, at: str) -> None:
    error = _refused(await _admin(world, "GET", f"/audit?{param}={at.replace('+', '%2B')}"), param)
    assert "outside the calendar" in error["message"]


async def test_a_key_expiring_past_the_calendar_in_utc_is_422(world: World) -> None:
    body = {"name": "k", "scopes": ["inference"], "expires_at": END_OF_TIME}
    reply = await _admin(world, "POST", "/keys", body)
    assert reply.status == 422, reply.body
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert reply.json()["error"]["param"] == "expires_at"


async def test_a_timestamp_is_kept_in_utc_up_to_the_last_instant() -> None:
    timestamps = TypeAdapter(Timestamp)
    assert timestamps.validate_python("9999-12-31T23:59:59.999999Z") == datetime.max.replace(tzinfo=UTC)
    assert timestamps.validate_python("2030-01-01T02:00:00+02:00") == datetime(2030, 1, 1, tzinfo=UTC)
    for bad in (END_OF_TIME, START_OF_TIME, "2030-01-01T00:00:00"):
        with pytest.raises(ValidationError):
            timestamps.validate_python(bad)


# ---- YAML to /apply ---------------------------------------------------------------------------

BOMB = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.mark.parametrize(("text", "problem"), [
    ("deployments: " + "[" * 5000 + "]" * 5000, f"nested deeper than {MAX_YAML_DEPTH} levels"),
    ("deployments: " + "[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1), "nested deeper"),
    ("deployments:\n" + "- " * 3000 + "1\n", "nested deeper"),
    (BOMB, "aliases expand to more than"),
    ("deployments: &d [*d]\nmodels: []\n", "an alias refers to a node that contains it"),
], ids=["flow-5000", "flow-just-over", "block-3000", "alias-bomb", "recursive-alias"])
async def test_yaml_nested_too_deep_or_expanding_too_far_is_422(world: World, text: str,
                                                                problem: str) -> None:
    reply = await _admin(world, "POST", "/apply", raw=text.encode(), content_type="application/yaml")
    error = _refused(reply, None)
    assert "not valid YAML" in error["message"] and problem in error["message"], error


async def test_yaml_nested_within_the_bound_is_only_invalid(world: World) -> None:
    nested = "[" * (MAX_YAML_DEPTH - 2) + "]" * (MAX_YAML_DEPTH - 2)
    reply = await _admin(world, "POST", "/apply", raw=f"deployments: {nested}\n".encode(),
                         content_type="application/yaml")
    error = _refused(reply, None)
    assert "not valid YAML" not in error["message"] and "deployments" in error["message"]


# ---- NUL characters ---------------------------------------------------------------------------

NUL_CASES = [
    ("GET", "/teams/a\x00b", None, "team_id"),
    ("GET", "/users/\x00", None, "user_id"),
    ("PUT", "/grants/{A}/model\x00x", None, "model"),
    ("GET", "/keys?after=k\x00", None, "after"),
    ("GET", "/audit?actor=\x00", None, "actor"),
    ("GET", "/providers?name=p\x00", None, "name"),
    ("POST", "/teams", {"name": "x\x00y"}, "name"),
    ("POST", "/users", {"email": "a\x00b@example.com"}, "email"),
    ("POST", "/teams/{A}/members", {"email": "a\x00@example.com", "role": "member"}, "email"),
    ("POST", "/service-accounts", {"team_id": "{A}", "name": "bot\x00"}, "name"),
    ("POST", "/limits", {"scope": "team_model", "team_id": "{A}", "model": "m\x00", "rpm": 1},
     "model"),
    ("POST", "/deployments", {"name": "d-nul", "engine": "simulator", "served_model": "m",
                              "profile": "test\x00fast"}, "profile"),
    ("POST", "/providers", {"name": "p-nul", "base_url": "https://up.example/v1\x00"}, "base_url"),
    ("POST", "/models", {"name": "m-nul", "deployment": "d", "aliases": ["ok", "b\x00d"]},
     "aliases.1"),
    ("POST", "/teams", {"name": "x", "we\x00ight": 2}, "we\\u0000ight"),
]


@pytest.mark.parametrize(("method", "path", "body", "param"), NUL_CASES,
                         ids=[f"{m} {p} {param}" for m, p, _, param in NUL_CASES])
async def test_a_nul_character_anywhere_is_422_naming_where(world: World, method: str, path: str,
                                                            body: Any, param: str) -> None:
    if body is not None:
        body = {k: v.format(**world.ids) if isinstance(v, str) and "{" in v else v
                for k, v in body.items()}
    error = _refused(await _admin(world, method, path, body), param)
    assert "NUL" in error["message"]


async def test_a_nul_in_a_platform_file_is_422_naming_the_line(world: World) -> None:
    text = ('providers:\n  - {name: nul-up, base_url: "https://up.example/v1\\0"}\n'
            "deployments:\n  - {name: nul-d, engine: openai, provider: nul-up, served_model: x}\n"
            "models:\n  - {name: nul-m, deployment: nul-d}\n")
    reply = await _admin(world, "POST", "/apply", raw=text.encode(), content_type="application/yaml")
    error = _refused(reply, None)
    assert "line 2" in error["message"] and "NUL" in error["message"], error


async def test_the_store_refuses_a_nul_it_cannot_hold_as_invalid(world: World) -> None:
    # The net behind the API's check, for callers that are not the admin API.
    if world.db.backend != "postgresql":
        pytest.skip("SQLite stores NUL characters; only PostgreSQL refuses them")
    with pytest.raises(store_errors.Invalid, match="cannot store"):
        async with world.db.transaction() as tx:
            await repo.create_team(tx, world.unique("t") + "\x00")
    with pytest.raises(store_errors.Invalid, match="cannot store"):
        async with world.db.read() as tx:
            await repo.get_team(tx, "team\x00")


# ---- bodies FastAPI cannot decode: 422 invalid_json, not "400 server_error" --------------------

@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,  # deeper than the JSON parser's recursion
    b'{"name": "\xff"}',  # not UTF-8
    b'{"name": "x", "weight": 1' + b"0" * 5000 + b"}",  # an integer past int()'s 4300 digits
], ids=["deep", "not-utf8", "long-integer"])
async def test_a_body_that_cannot_be_decoded_is_422_invalid_json(world: World, raw: bytes) -> None:
    error = _refused(await _admin(world, "POST", "/teams", raw=raw), None, code="invalid_json")
    assert error["message"].startswith("The body is not JSON")


async def test_any_other_http_4xx_is_an_invalid_request_not_a_server_error() -> None:
    # Before: every HTTPException but 404/405 kept the base class's type, "server_error".
    error = to_api_error(HTTPException(413, "Request body too large"))
    assert (error.status, error.type, error.message) == (413, "invalid_request_error",
                                                         "Request body too large")
    assert to_api_error(HTTPException(502, "bad gateway")).type == "server_error"


# ---- the document says what errors look like --------------------------------------------------

async def test_every_operation_documents_the_error_it_sends(world: World) -> None:
    document = (await call(world.app, "GET", f"{V1}/openapi.json")).json()
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert responses["default"]["content"]["application/json"]["schema"] == error_ref, (
                method, path)
            if "422" in responses:
                assert responses["422"]["content"]["application/json"]["schema"] == error_ref
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["Error"]["required"] == ["error"]
    after = next(p for p in document["paths"][f"{V1}/audit"]["get"]["parameters"]
                 if p["name"] == "after")
    assert after["schema"]["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX}
