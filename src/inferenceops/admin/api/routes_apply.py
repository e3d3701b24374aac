"""Route: ``POST /apply`` — make the stored catalog match a platform file (config as code).

Thin: read the file from the body → authorize (``catalog:write``: platform admins) → service →
schema. The body is the file itself (``application/yaml``, ``text/yaml`` or ``text/plain``,
UTF-8), or JSON ``{"file": "<yaml text>", "source": "<name for messages>"}``; at most
``MAX_BODY_BYTES`` (413 above). ``?dry_run=true`` plans without writing. The body is read
only after authentication and authorization, so a caller without the permission never has
it parsed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from inferenceops.admin.api import apply_service as service
from inferenceops.admin.api.apply_schemas import DEFAULT_SOURCE, ApplyFile, ApplyOut
from inferenceops.admin.api.deps import Access, Context, require
from inferenceops.admin.api.errors import Unprocessable, UnsupportedMediaType
from inferenceops.errors import PayloadTooLarge

router = APIRouter(tags=["apply"])
Write = Annotated[Access, Depends(require("catalog:write"))]

#: A platform file is a few kilobytes; this only keeps a mistaken upload from filling memory.
MAX_BODY_BYTES = 1024 * 1024
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml",
                        "text/plain"})
JSON_TYPE = "application/json"

_TEXT = {"schema": {"type": "string", "description": "The platform YAML"}}
_OPENAPI_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/yaml": _TEXT, "text/yaml": _TEXT, "text/plain": _TEXT,
    JSON_TYPE: {"schema": ApplyFile.model_json_schema()},
}}}


@router.post("/apply", response_model=ApplyOut, openapi_extra=_OPENAPI_BODY)
async def apply(request: Request, ctx: Context, access: Write, dry_run: Annotated[bool, Query(
        description="Only plan: list the changes, write nothing")] = False) -> ApplyOut:
    """Make providers, deployments and models match the file, all or nothing (see ``inferenceops apply``).

    422: the file is invalid (the message names the line and the field); 409: the store refused a
    change (nothing was applied). Rows made through the admin API that the file does not name
    are left alone; one audit entry per change.
    """
    text, source = await _platform_file(request)
    return await service.apply_file(ctx, access, text, source=source, dry_run=dry_run)


async def _platform_file(request: Request) -> tuple[str, str]:
    """(the file's text, its name for messages) from the body, by its content type."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in YAML_TYPES and media_type != JSON_TYPE:
        raise UnsupportedMediaType(
            f"Send the platform file as application/yaml (or text/yaml, text/plain), or as JSON "
            f'{{"file": "<yaml text>", "source": "<name>"}}; not {media_type or "no Content-Type"}')
    body = await _bounded_body(request)
    if media_type != JSON_TYPE:
        return _utf8(body), DEFAULT_SOURCE
    try:
        parsed = ApplyFile.model_validate_json(body)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise Unprocessable(f"The body is not valid JSON: {exc.errors()[0]['msg']}",
                                code="invalid_json") from None
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in exc.errors()]) from None
    return parsed.file, parsed.source


async def _bounded_body(request: Request) -> bytes:
    too_large = PayloadTooLarge(f"The platform file may be at most {MAX_BODY_BYTES // 1024} KiB")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():  # a missing or lying Content-Length is bounded too
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unprocessable(f"The platform file is not UTF-8 text (byte {exc.start})") from None
