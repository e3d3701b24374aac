"""One check over every request's input: no NUL character reaches the store. No store I/O.

PostgreSQL cannot store U+0000 in text or JSONB (asyncpg's ``invalid byte sequence for
encoding "UTF8": 0x00``), and SQLite would store it and hand it back to clients and logs.
No id, name, email or URL the admin API takes has a use for it, so ``reject_nul`` — an
app-wide dependency (``app.py``), run after authentication — refuses it in any path
parameter, query parameter (name or value) and JSON body string (key or value) with a 422
whose ``param`` says where: ``team_id``, ``name``, ``aliases.0``. Writing this once here,
rather than on each schema, covers routes added later too; the store's error translation
(``store.errors``) stays as the net for what does not come through here (a platform file's
``"\\0"`` escapes: its text is YAML, not JSON).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import Request

from inferenceops.admin.api.errors import Unprocessable

NUL = "\x00"
#: Media types FastAPI parses as JSON (``application/json``, ``application/*+json``).
_JSON_SUFFIXES = ("/json", "+json")


async def reject_nul(request: Request) -> None:
    """Refuse a NUL character in the request's parameters or JSON body (422 naming where)."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and NUL in value:
            raise _refused("the path parameter", name)
    for name, value in request.query_params.multi_items():
        if NUL in name or NUL in value:
            raise _refused("the query parameter", name)
    if await _has_json_body(request):
        try:
            document = await request.json()  # FastAPI's parse, cached on the request
        except (ValueError, RecursionError):
            return  # not JSON after all: FastAPI's own validation answers for it
        where = next(_nul_paths(document), None)
        if where is not None:
            raise _refused("the body field", where or "body")


def _refused(what: str, where: str) -> Unprocessable:
    shown = where.replace(NUL, "\\u0000")
    return Unprocessable(f"{shown}: must not contain NUL characters (\\u0000); {what} "
                         f"{shown!r} has one", param=shown)


async def _has_json_body(request: Request) -> bool:
    """Whether FastAPI parsed the body as JSON (so ``request.json()`` is its cached result).

    Only routes with a body model are parsed; others (``POST /apply``) read their body
    themselves, bounded, and are not read here.
    """
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None:
        return False
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not (media_type.startswith("application/") and media_type.endswith(_JSON_SUFFIXES)):
        return False
    return bool(await request.body())


def _nul_paths(document: Any) -> Iterator[str]:
    """The dotted paths (``aliases.0``) of strings, and object keys, that hold a NUL.

    Iterative: JSON nested as deep as the parser allows must not exhaust the stack here.
    """
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if NUL in value:
                yield path
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                child = f"{path}.{key}" if path else str(key)
                if NUL in str(key):
                    yield child
                stack.append((child, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), item)
                         for i, item in reversed(list(enumerate(value))))
