"""Admin service for retained bodies: the compliance export, for auditors and platform admins.

Only teams that opted in to storing bodies (retention ``store``) have any, and they are
stored redacted (``platform.retention``). Reading them is itself audited — unlike every
other read of the admin API: one ``retained_bodies.read`` entry per page, naming the
filter, so a review can see who looked at what. Pages go by row id (``next_after``);
``since``/``until`` bound the request times. Input errors are 400 naming the parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel

from inferenceops.admin.api.deps import Access, AdminContext
from inferenceops.admin.api.services import audit
from inferenceops.errors import InvalidParameter
from inferenceops.store.repo.retention import export_bodies


class RetainedBodyOut(BaseModel):
    id: int
    request_id: str
    at: datetime
    expires_at: datetime
    team_id: str
    key_id: str
    model: str | None
    endpoint: str
    stream: bool
    status: int
    #: The request's JSON as stored (redacted); a body that was not JSON is its redacted text.
    request: Any
    #: The answer (a stream's: its text per choice), redacted; None when none was sent.
    response: Any
    truncated: bool


class RetainedBodiesOut(BaseModel):
    data: list[RetainedBodyOut]
    next_after: str | None


class BodiesQuery(BaseModel):
    """What a read of retained bodies asked for: the audit entry's ``after``."""

    team_id: str | None
    since: datetime | None
    until: datetime | None
    request_id: str | None
    after: int | None
    returned: int


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


async def read_bodies(ctx: AdminContext, access: Access, *, team_id: str | None,
                      since: datetime | None, until: datetime | None, request_id: str | None,
                      after: int | None, limit: int) -> RetainedBodiesOut:
    access.check(team_id, "retained bodies")
    if since is not None and until is not None and until <= since:
        raise InvalidParameter("until: must be after since", param="until")
    async with ctx.db.transaction("reading retained bodies") as tx:
        rows = await export_bodies(tx, team_id=team_id, since=since, until=until,
                                   request_id=request_id, after=after, limit=limit)
        query = BodiesQuery(team_id=team_id, since=since, until=until, request_id=request_id,
                            after=after, returned=len(rows))
        await audit(tx, access.principal, "retained_bodies.read", "team", team_id or "*",
                    after=query)
    data = [RetainedBodyOut(**{**row, "request": _json(row["request"]),
                               "response": _json(row["response"])}) for row in rows]
    return RetainedBodiesOut(data=data, next_after=str(rows[-1]["id"]) if len(rows) == limit else None)
