"""Query parameters shared by the listing routes: ``?limit=&after=``. No I/O."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from inferenceops.store.repo._common import MAX_PAGE

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size")]
After = Annotated[str | None, Query(description="`next_after` of the previous page")]
DEFAULT_LIMIT = 100
