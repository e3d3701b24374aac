"""Row ids: a readable type prefix plus 20 random base32 characters (100 bits), e.g. ``team_…``.

Pure functions, no I/O. Ids are opaque strings to everything outside the store;
the prefix exists so a human reading a log or an audit entry knows what it names.
"""

from __future__ import annotations

import base64
import secrets

#: Prefix per table; the admin API and the CLI may show them.
TEAM, USER, SERVICE_ACCOUNT, API_KEY = "team", "usr", "sa", "key"
PROVIDER, DEPLOYMENT, MODEL, PRICE = "prov", "dep", "mdl", "prc"
LIMIT, BUDGET = "lim", "bgt"
INVITATION = "inv"
SIGN_IN_LINK = "lnk"

RANDOM_CHARS = 20


def new_id(prefix: str) -> str:
    """``<prefix>_`` + 20 lowercase base32 characters from the OS CSPRNG."""
    return f"{prefix}_{base64.b32encode(secrets.token_bytes(15)).decode('ascii')[:RANDOM_CHARS].lower()}"
