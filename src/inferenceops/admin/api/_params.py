"""Query parameters shared by the listing routes: ``?limit=&after=``. No I/O.

``after`` is the previous page's ``next_after``: a name or id for most lists (any text; the
NUL character is refused for every parameter in ``_input``), an audit sequence number for
``/audit`` — bounded like the BIGINT it is compared with (``_values.Sequence``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from inferenceops.admin.api._values import BIGINT_MAX
from inferenceops.store.repo._common import MAX_PAGE

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size")]
After = Annotated[str | None, Query(description="`next_after` of the previous page")]
SeqAfter = Annotated[int | None, Query(ge=0, le=BIGINT_MAX,
                                       description="`next_after` of the previous page")]
DEFAULT_LIMIT = 100
