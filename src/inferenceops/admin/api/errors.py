"""Every admin API failure becomes OpenAI error JSON here, in one handler.

    store NotFound                  → 404 invalid_request_error / not_found
    store Conflict                  → 409 invalid_request_error / conflict
    store Invalid                   → 422 invalid_request_error / invalid_value, param = its field
                                      (also a value the database itself refused: out of range,
                                      a character it cannot store)
    RequestValidationError          → 422 invalid_request_error / invalid_value, param = field path
                                      (a cross-field rule: the field its message quotes)
    a body FastAPI could not decode → 422 invalid_request_error / invalid_json (nested too deep for
                                      the parser, a number too long, not UTF-8)
    config ConfigError              → 422 invalid_request_error / invalid_value, param null (a platform
                                      file: its message names the line and the field)
    store SchemaOutdated/Unavailable→ 503 service_unavailable / not_ready
    other StoreError                → 500 server_error (logged)
    InferenceOpsError (401, 403, …) → its own status/type/code
    Starlette HTTPException         → its status (unknown path 404, wrong method 405, any other
                                      4xx invalid_request_error, 5xx server_error)
    anything else                   → 500 server_error (logged with traceback)

The body is ``inferenceops.error_shape.error_document``'s, so the admin API
and the data plane answer errors in one shape (``_openapi`` documents it on every
operation). Handlers never build error dicts themselves; they raise.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from inferenceops import errors
from inferenceops.config.spec import ConfigError
from inferenceops.error_shape import error_document, internal_error
from inferenceops.store import errors as store_errors
from inferenceops.store.repo.catalog_specs import first_field

log = logging.getLogger("inferenceops.admin")

#: What ``error_response`` is registered for (``app.py``).
HANDLED = (Exception, HTTPException, RequestValidationError, store_errors.StoreError,
           errors.InferenceOpsError, ConfigError)


class Conflict(errors.InvalidRequest):
    status = 409
    code = "conflict"


class Unprocessable(errors.InvalidRequest):
    status = 422
    code = "invalid_value"


class UnsupportedMediaType(errors.InvalidRequest):
    status = 415
    code = "unsupported_media_type"


_LOCATIONS = ("body", "query", "path", "header", "cookie")


def _unlocated(problem: dict[str, Any]) -> dict[str, Any]:
    """The problem with its location relative to the body/query/… it is in."""
    loc = tuple(problem.get("loc", ()))
    return {**problem, "loc": loc[1:] if loc and loc[0] in _LOCATIONS else loc}


def _validation_error(exc: RequestValidationError) -> errors.InferenceOpsError:
    problems = exc.errors()
    first: dict[str, Any] = problems[0] if problems else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return Unprocessable(f"The body is not valid JSON: {first.get('msg')}", code="invalid_json")
    # The field: union tags skipped, a rule over several fields by the field it quotes.
    param = first_field([_unlocated(p) for p in problems]) if problems else None
    message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
                        for e in problems)
    return Unprocessable(message or "invalid request", param=param)


def _http_error(exc: HTTPException) -> errors.InferenceOpsError:
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return errors.NotFound("No such admin API route")
    if exc.status_code == 405:
        return errors.MethodNotAllowed("This method is not allowed on this route")
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
        # FastAPI's "There was an error parsing the body": JSON nested deeper than the parser
        # goes, an integer longer than Python converts, bytes that are not UTF-8.
        return Unprocessable(f"The body is not JSON this API can read ({type(exc.__cause__).__name__}: "
                             f"{str(exc.__cause__)[:200]})", code="invalid_json")
    if 400 <= exc.status_code < 500:
        return errors.InvalidRequest(str(exc.detail), status=exc.status_code, headers=headers)
    return errors.InferenceOpsError(str(exc.detail), status=exc.status_code, headers=headers)


def to_api_error(exc: BaseException) -> errors.InferenceOpsError:
    """The client-visible error for anything a route raised."""
    if isinstance(exc, errors.InferenceOpsError):
        return exc
    if isinstance(exc, RequestValidationError):
        return _validation_error(exc)
    if isinstance(exc, ConfigError):
        return Unprocessable(str(exc))
    if isinstance(exc, store_errors.NotFound):
        return errors.NotFound(str(exc))
    if isinstance(exc, store_errors.Conflict):
        return Conflict(str(exc))
    if isinstance(exc, store_errors.Invalid):
        return Unprocessable(str(exc), param=exc.field)
    if isinstance(exc, store_errors.SchemaOutdated | store_errors.StoreUnavailable):
        log.error("admin API: store unavailable: %s", exc)
        return errors.Unavailable(str(exc))
    if isinstance(exc, store_errors.StoreError):
        log.error("admin API: store error: %s", exc)
        return errors.InferenceOpsError("The store failed while processing your request.")
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    return internal_error(exc)


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    error = to_api_error(exc)
    return JSONResponse(error_document(error), status_code=error.status, headers=error.headers or None)
