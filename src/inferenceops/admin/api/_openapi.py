"""The OpenAPI document says what errors look like. No I/O.

FastAPI documents a 422 as its own ``HTTPValidationError`` (``{"detail": [...]}``), which this
API never sends: every error is the OpenAI document ``errors.py`` builds. ``document_errors``
rewrites the generated document so that every operation's 422 and ``default`` response is
``Error`` — so clients generated from the document, and the fuzzer that checks responses
against it (``tests/integration/test_admin_fuzz.py``), know the real shape.
"""

from __future__ import annotations

from typing import Any

ERROR_REF = "#/components/schemas/Error"
#: ``{"error": {"message", "type", "param", "code"}}`` (``error_shape.error_document``).
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {
            "message": {"type": "string", "description": "What went wrong, for people"},
            "type": {"type": "string", "description": "The OpenAI error type, e.g. "
                     "invalid_request_error, authentication_error, permission_error"},
            "param": {"anyOf": [{"type": "string"}, {"type": "null"}],
                      "description": "The parameter or body field at fault (dotted), if one is"},
            "code": {"type": "string", "description": "e.g. invalid_value, not_found, conflict"},
        },
    }},
}
_FASTAPI_ERRORS = ("HTTPValidationError", "ValidationError")
_INVALID = "A parameter or the body is invalid; `error.param` names it"
_OTHER = "An error (401, 403, 404, 409, …), in the same shape"


def document_errors(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (FastAPI's ``openapi()``), its error responses made ``Error``; in place."""
    content = {"application/json": {"schema": {"$ref": ERROR_REF}}}
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": _INVALID, "content": content}
            responses["default"] = {"description": _OTHER, "content": content}
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_ERRORS:
        schemas.pop(name, None)
    schemas["Error"] = ERROR_SCHEMA
    return document
