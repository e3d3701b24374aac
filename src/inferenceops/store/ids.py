"""Row ids: a readable type prefix plus 20 random base32 characters (100 bits), e.g. ``team_…``.

Pure functions, no I/O. Ids are opaque strings to everything outside the store;
the prefix exists so a human reading a log or an audit entry knows what it names.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

#: Prefix per table; the admin API and the CLI may show them.
TEAM, USER, SERVICE_ACCOUNT, API_KEY = "team", "usr", "sa", "key"
PROVIDER, DEPLOYMENT, MODEL, PRICE = "prov", "dep", "mdl", "prc"
LIMIT, BUDGET = "lim", "bgt"
INVITATION = "inv"
SIGN_IN_LINK = "lnk"
FILE = "file"
GUARDRAIL_POLICY, GUARDRAIL_ATTACHMENT = "grp", "gra"
ADAPTER = "lora"

RANDOM_CHARS = 20


def new_id(prefix: str) -> str:
    """``<prefix>_`` + 20 lowercase base32 characters from the OS CSPRNG."""
    return f"{prefix}_{base64.b32encode(secrets.token_bytes(15)).decode('ascii')[:RANDOM_CHARS].lower()}"


def new_sortable_id(prefix: str, at: datetime, *, sep: str = "_") -> str:
    """``<prefix><sep>`` + ``at`` in milliseconds (10 characters) + 16 random ones (80 bits).

    Both parts are base32hex in lower case (``0-9a-v``, which sorts as it counts), so ids
    of one prefix sort by creation time to the millisecond: a listing pages on the id
    alone, and a cursor stays valid when the row it names is deleted. OpenAI's Files API
    spells its ids ``file-…`` (``sep="-"``).
    """
    millis = int(at.timestamp() * 1000).to_bytes(6, "big")
    time_part = base64.b32hexencode(millis).decode("ascii")[:10]
    random_part = base64.b32hexencode(secrets.token_bytes(10)).decode("ascii")
    return f"{prefix}{sep}{(time_part + random_part).lower()}"
