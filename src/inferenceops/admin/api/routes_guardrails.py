"""Routes: ``/guardrails/policies`` and ``/guardrails/attachments``. Thin: parse → authorize → service.

``POST /guardrails/policies`` creates a policy (409 if the name is taken, here or in the
platform file); ``PUT /guardrails/policies/{name}`` creates (201) or changes (200) it, a
change adding one to its version. ``POST /guardrails/attachments`` attaches a policy: 201
when it made the attachment, 200 when it was there. Rules are the platform file's
(``docs/guardrails.md``); a bad one is 422 naming the field (``rules.0.regex``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from inferenceops.admin.api import guardrail_service as service
from inferenceops.admin.api import schemas as s
from inferenceops.admin.api._params import DEFAULT_LIMIT, After, Limit
from inferenceops.admin.api.deps import Access, Context, require
from inferenceops.admin.api.guardrail_schemas import (
    AttachmentCreate,
    AttachmentOut,
    PolicyBody,
    PolicyCreate,
    PolicyOut,
)

router = APIRouter(tags=["guardrails"])
Read = Annotated[Access, Depends(require("guardrails:read"))]
Write = Annotated[Access, Depends(require("guardrails:write"))]


@router.get("/guardrails/policies", response_model=s.Page[PolicyOut])
async def list_policies(ctx: Context, access: Read, limit: Limit = DEFAULT_LIMIT,
                        after: After = None) -> s.Page[PolicyOut]:
    """Every policy by name, the platform file's (``source: file``) and the API's."""
    return await service.list_policies(ctx, access, limit=limit, after=after)


@router.post("/guardrails/policies", status_code=201, response_model=PolicyOut)
async def create_policy(body: PolicyCreate, ctx: Context, access: Write) -> PolicyOut:
    """A new policy, at version 1."""
    return await service.create_policy(ctx, access, body)


@router.get("/guardrails/policies/{name}", response_model=PolicyOut)
async def get_policy(name: str, ctx: Context, access: Read) -> PolicyOut:
    return await service.get_policy(ctx, access, name)


@router.put("/guardrails/policies/{name}", status_code=200, response_model=PolicyOut,
            responses={201: {"description": "The policy was created", "model": PolicyOut}})
async def put_policy(name: str, body: PolicyBody, response: Response, ctx: Context,
                     access: Write) -> PolicyOut:
    """Create (201) or change (200) a policy's rules and description; a change adds one to
    its version, the same content again changes nothing."""
    out, created = await service.put_policy(ctx, access, name, body)
    response.status_code = 201 if created else 200
    return out


@router.delete("/guardrails/policies/{name}", status_code=204, response_class=Response)
async def delete_policy(name: str, ctx: Context, access: Write) -> Response:
    """Delete a policy that is attached nowhere (409 otherwise: detach it first)."""
    await service.delete_policy(ctx, access, name)
    return Response(status_code=204)


@router.get("/guardrails/attachments", response_model=s.Page[AttachmentOut])
async def list_attachments(ctx: Context, access: Read, policy: str | None = None,
                           limit: Limit = DEFAULT_LIMIT,
                           after: After = None) -> s.Page[AttachmentOut]:
    """Where policies are attached: the platform file's first, then the API's by id."""
    return await service.list_attachments(ctx, access, policy=policy, limit=limit, after=after)


@router.post("/guardrails/attachments", status_code=201, response_model=AttachmentOut,
             responses={200: {"description": "Already attached there", "model": AttachmentOut}})
async def attach(body: AttachmentCreate, response: Response, ctx: Context,
                 access: Write) -> AttachmentOut:
    """Attach a policy to the platform, a team, a model or a key (which must exist)."""
    out, created = await service.attach(ctx, access, body)
    response.status_code = 201 if created else 200
    return out


@router.delete("/guardrails/attachments/{attachment_id}", status_code=204,
               response_class=Response)
async def detach(attachment_id: str, ctx: Context, access: Write) -> Response:
    await service.detach(ctx, access, attachment_id)
    return Response(status_code=204)
